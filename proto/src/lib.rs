//! The CygnetCI gRPC contract, package `cygnet.v1`.
//!
//! Server, agent, tests, examples and benchmarks all use these generated types; nothing else
//! defines the wire format.

#![allow(clippy::all, clippy::pedantic)]

/// Generated messages, clients (`*_client`) and servers (`*_server`) of `cygnet.v1`.
pub mod v1 {
    tonic::include_proto!("cygnet.v1");
}

/// The encoded `FileDescriptorSet` of every `cygnet.v1` file and its imports, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cygnet_descriptor.bin"));
