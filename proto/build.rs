//! Compiles `cygnet/v1/*.proto` with the pure-Rust `protox` compiler (no system `protoc`), generates
//! prost messages and tonic clients/servers, and writes the encoded descriptor set that server
//! reflection serves.

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let package_dir = proto_dir.join("cygnet/v1");
    let mut files: Vec<PathBuf> = fs::read_dir(&package_dir)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed={}", package_dir.display());
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let descriptor_set = protox::Compiler::new([&proto_dir])?
        .include_source_info(true)
        .include_imports(true)
        .open_files(&files)?
        .file_descriptor_set();

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("cygnet_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptor_set),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // No `XClient::connect(url)` constructor: it would clash with the `Connect` RPC; clients are
        // built with `XClient::new(channel)`.
        .build_transport(false)
        // Values that may be secret: their `Debug` (proto/src/lib.rs) leaves the value out, so no
        // log line or error message can print one.
        .skip_debug([
            ".cygnet.v1.JobVariable",
            ".cygnet.v1.SetVariableRequest",
            ".cygnet.v1.VariableInput",
        ])
        .compile_fds(descriptor_set)?;
    Ok(())
}
