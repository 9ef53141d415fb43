//! Random protobuf messages of any request type, driven by the file descriptor set, so every
//! field of every request (nested messages, repeated fields, maps, enums, timestamps) gets
//! random and extreme values without a hand-written generator per message.
//!
//! A strategy yields the message's wire encoding; the caller decodes it into the generated
//! type and sends it with the generated client.

use std::collections::HashMap;

use proptest::prelude::*;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};

/// How deep nested messages are filled; deeper ones are left empty.
const MAX_DEPTH: u32 = 3;
/// The longest string or byte field sent (under the server's 4 MiB message limit).
const LONG: usize = 70_000;

/// One RPC as the descriptor lists it.
#[derive(Clone, Debug)]
pub struct Method {
    /// `cygnet.v1.AgentService/ListAgents`
    pub path: String,
    /// `.cygnet.v1.ListAgentsRequest`
    pub input_type: String,
    pub client_streaming: bool,
    pub server_streaming: bool,
}

/// The messages, enums and methods of `cygnet.v1`.
pub struct Schema {
    messages: HashMap<String, DescriptorProto>,
    enums: HashMap<String, Vec<i32>>,
    pub methods: Vec<Method>,
}

/// What the generated values aim at.
#[derive(Clone, Copy, Debug)]
pub struct Aim {
    /// The member's customer: `customer_id` fields lean toward it, so requests get past the
    /// tenant check and reach the store.
    pub customer_id: i64,
    /// Out of ten, how often a field gets an odd value (an extreme, odd unicode, a huge string)
    /// rather than a plain one. Low values make requests that pass validation but for one or two
    /// fields, reaching deeper code; high values make requests that are odd throughout.
    pub odd_in_ten: u32,
}

impl Aim {
    fn plain_weight(self) -> u32 {
        10 - self.odd_in_ten.min(9)
    }

    fn odd_weight(self) -> u32 {
        self.odd_in_ten.clamp(1, 10)
    }
}

impl Schema {
    pub fn load() -> Schema {
        let set = FileDescriptorSet::decode(cygnet_proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set decodes");
        let mut schema = Schema {
            messages: HashMap::new(),
            enums: HashMap::new(),
            methods: Vec::new(),
        };
        for file in set.file {
            let package = file.package().to_owned();
            for message in &file.message_type {
                schema.add_message(&format!(".{package}"), message);
            }
            for enumeration in &file.enum_type {
                schema.enums.insert(
                    format!(".{package}.{}", enumeration.name()),
                    enumeration
                        .value
                        .iter()
                        .map(|value| value.number())
                        .collect(),
                );
            }
            for service in &file.service {
                for method in &service.method {
                    schema.methods.push(Method {
                        path: format!("{package}.{}/{}", service.name(), method.name()),
                        input_type: method.input_type().to_owned(),
                        client_streaming: method.client_streaming(),
                        server_streaming: method.server_streaming(),
                    });
                }
            }
        }
        schema
    }

    fn add_message(&mut self, scope: &str, message: &DescriptorProto) {
        let name = format!("{scope}.{}", message.name());
        for nested in &message.nested_type {
            self.add_message(&name, nested);
        }
        for enumeration in &message.enum_type {
            self.enums.insert(
                format!("{name}.{}", enumeration.name()),
                enumeration
                    .value
                    .iter()
                    .map(|value| value.number())
                    .collect(),
            );
        }
        self.messages.insert(name, message.clone());
    }

    /// Encodings of random `type_name` messages.
    pub fn message(&self, type_name: &str, aim: Aim, depth: u32) -> BoxedStrategy<Vec<u8>> {
        if type_name == ".google.protobuf.Timestamp" {
            return timestamp(aim).boxed();
        }
        let Some(message) = self.messages.get(type_name) else {
            panic!("{type_name} is not in the descriptor set");
        };
        if depth > MAX_DEPTH {
            return Just(Vec::new()).boxed();
        }
        let fields: Vec<BoxedStrategy<Vec<u8>>> = message
            .field
            .iter()
            .map(|field| self.field(field, aim, depth))
            .collect();
        fields.prop_map(|parts| parts.concat()).boxed()
    }

    /// A field: absent, or present once (or several times when repeated).
    fn field(&self, field: &FieldDescriptorProto, aim: Aim, depth: u32) -> BoxedStrategy<Vec<u8>> {
        let one = self.value(field, aim, depth);
        let present = if field.label() == Label::Repeated {
            prop::collection::vec(one, 1..4)
                .prop_map(|values| values.concat())
                .boxed()
        } else {
            one
        };
        prop_oneof![1 => Just(Vec::new()), 3 => present].boxed()
    }

    /// One encoded occurrence of `field` (its key and value).
    fn value(&self, field: &FieldDescriptorProto, aim: Aim, depth: u32) -> BoxedStrategy<Vec<u8>> {
        let tag = u32::try_from(field.number()).expect("a field number");
        let kind = field.r#type();
        match kind {
            Type::Int64 | Type::Sint64 | Type::Sfixed64 => int64(field.name(), aim)
                .prop_map(move |value| match kind {
                    Type::Sint64 => varint(tag, ((value << 1) ^ (value >> 63)) as u64),
                    Type::Sfixed64 => fixed64(tag, value.to_le_bytes()),
                    _ => varint(tag, value as u64),
                })
                .boxed(),
            Type::Uint64 | Type::Fixed64 => mixed(
                aim,
                0..100u64,
                prop_oneof![Just(u64::MAX), Just(1u64 << 63), any::<u64>()],
            )
            .prop_map(move |value| {
                if kind == Type::Fixed64 {
                    fixed64(tag, value.to_le_bytes())
                } else {
                    varint(tag, value)
                }
            })
            .boxed(),
            Type::Int32 | Type::Sint32 | Type::Sfixed32 => int32(aim)
                .prop_map(move |value| match kind {
                    Type::Sint32 => varint(tag, u64::from(((value << 1) ^ (value >> 31)) as u32)),
                    Type::Sfixed32 => fixed32(tag, value.to_le_bytes()),
                    _ => varint(tag, i64::from(value) as u64),
                })
                .boxed(),
            Type::Uint32 | Type::Fixed32 => mixed(
                aim,
                0..100u32,
                prop_oneof![Just(u32::MAX), Just(1u32 << 31), any::<u32>()],
            )
            .prop_map(move |value| {
                if kind == Type::Fixed32 {
                    fixed32(tag, value.to_le_bytes())
                } else {
                    varint(tag, u64::from(value))
                }
            })
            .boxed(),
            Type::Enum => {
                let defined = self
                    .enums
                    .get(field.type_name())
                    .cloned()
                    .unwrap_or_else(|| vec![0]);
                mixed(aim, prop::sample::select(defined), int32(aim))
                    .prop_map(move |value| varint(tag, i64::from(value) as u64))
                    .boxed()
            }
            Type::Bool => any::<bool>()
                .prop_map(move |value| varint(tag, u64::from(value)))
                .boxed(),
            Type::Double => mixed(
                aim,
                0.0..100.0f64,
                prop_oneof![
                    Just(f64::NAN),
                    Just(f64::INFINITY),
                    Just(f64::NEG_INFINITY),
                    Just(f64::MAX),
                    Just(f64::MIN),
                    Just(-0.0),
                    Just(f64::MIN_POSITIVE),
                    any::<f64>(),
                ],
            )
            .prop_map(move |value| fixed64(tag, value.to_le_bytes()))
            .boxed(),
            Type::Float => mixed(
                aim,
                0.0..100.0f32,
                prop_oneof![
                    Just(f32::NAN),
                    Just(f32::INFINITY),
                    Just(f32::MAX),
                    Just(f32::MIN),
                    any::<f32>(),
                ],
            )
            .prop_map(move |value| fixed32(tag, value.to_le_bytes()))
            .boxed(),
            Type::String => text(field.name(), aim)
                .prop_map(move |value| delimited(tag, value.as_bytes()))
                .boxed(),
            Type::Bytes => mixed(
                aim,
                prop::collection::vec(any::<u8>(), 1..64),
                prop_oneof![Just(Vec::new()), Just(vec![0xff; LONG])],
            )
            .prop_map(move |value| delimited(tag, &value))
            .boxed(),
            Type::Message => self
                .message(field.type_name(), aim, depth + 1)
                .prop_map(move |value| delimited(tag, &value))
                .boxed(),
            Type::Group => Just(Vec::new()).boxed(),
        }
    }
}

/// `plain` or `odd` values, weighted by `aim`.
fn mixed<T: std::fmt::Debug + Clone + 'static>(
    aim: Aim,
    plain: impl Strategy<Value = T> + 'static,
    odd: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    prop_oneof![aim.plain_weight() => plain, aim.odd_weight() => odd].boxed()
}

/// 64-bit integers: the extremes, small numbers, anything; ids lean toward ones that exist.
fn int64(name: &str, aim: Aim) -> BoxedStrategy<i64> {
    let extremes = prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(i64::MIN + 1),
        Just(-1),
        Just(0),
        Just(i64::from(i32::MAX) + 1),
        Just(i64::MAX / 1000 + 1),
        any::<i64>(),
    ];
    let plain = if name == "customer_id" {
        Just(aim.customer_id).boxed()
    } else if name.ends_with("_id") || name == "id" {
        (1..8i64).boxed()
    } else {
        (0..100i64).boxed()
    };
    mixed(aim, plain, extremes)
}

fn int32(aim: Aim) -> BoxedStrategy<i32> {
    mixed(
        aim,
        0..100i32,
        prop_oneof![
            Just(i32::MIN),
            Just(i32::MAX),
            Just(-1),
            Just(0),
            -5..5000i32,
            any::<i32>(),
        ],
    )
}

/// Strings: plain, or empty, long, and odd unicode (controls, bidi marks, NUL, astral planes).
/// A plain page token is the empty one (the first page): any other is a forged one.
fn text(name: &str, aim: Aim) -> BoxedStrategy<String> {
    let plain = if name == "page_token" {
        Just(String::new()).boxed()
    } else {
        "[a-z][a-z0-9-]{0,11}".boxed()
    };
    mixed(
        aim,
        plain,
        prop_oneof![
            Just(String::new()),
            Just("x".repeat(LONG)),
            Just("\u{1F600}".repeat(LONG / 4)),
            Just("a\u{0}b".to_owned()),
            Just("\u{202E}gnp.exe\u{200B}\u{FEFF}".to_owned()),
            Just(" \t\r\n ".to_owned()),
            Just("e\u{301}\u{301}\u{301}".to_owned()),
            Just("'; DROP TABLE users; --".to_owned()),
            Just("../../../etc/passwd".to_owned()),
            Just("http://127.0.0.1:0/".to_owned()),
            Just("${SECRET} $(id) `id`".to_owned()),
            any::<String>(),
        ],
    )
}

/// Timestamps: plain ones around now, or far outside chrono's and protobuf's range, at their
/// edges, with nanos out of range.
fn timestamp(aim: Aim) -> impl Strategy<Value = Vec<u8>> {
    let chrono_earliest = chrono::DateTime::<chrono::Utc>::MIN_UTC.timestamp();
    let chrono_latest = chrono::DateTime::<chrono::Utc>::MAX_UTC.timestamp();
    let odd_seconds = prop_oneof![
        // The edges of chrono's range: parsed without error, but nothing may be added or taken.
        3 => prop::sample::select(vec![
            chrono_earliest,
            chrono_earliest + 1,
            chrono_earliest + 86_400,
            chrono_latest,
            chrono_latest - 1,
            chrono_latest - 86_400,
        ]),
        // The edges of protobuf's range (years 1 to 9999).
        2 => prop::sample::select(vec![
            -62_135_596_801,
            -62_135_596_800,
            253_402_300_799,
            253_402_300_800,
        ]),
        2 => prop::sample::select(vec![i64::MIN, i64::MAX, 0, -1]),
        1 => any::<i64>(),
    ];
    let seconds = mixed(aim, 1_700_000_000..1_900_000_000i64, odd_seconds);
    let nanos = mixed(
        aim,
        0..1_000_000_000i32,
        prop_oneof![
            Just(-1),
            Just(1_000_000_000),
            Just(i32::MIN),
            Just(i32::MAX),
            any::<i32>(),
        ],
    );
    (seconds, nanos).prop_map(|(seconds, nanos)| {
        let mut out = varint(1, seconds as u64);
        out.extend(varint(2, i64::from(nanos) as u64));
        out
    })
}

fn varint(tag: u32, value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    encode_key(tag, WireType::Varint, &mut out);
    encode_varint(value, &mut out);
    out
}

fn fixed64(tag: u32, bytes: [u8; 8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_key(tag, WireType::SixtyFourBit, &mut out);
    out.extend_from_slice(&bytes);
    out
}

fn fixed32(tag: u32, bytes: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_key(tag, WireType::ThirtyTwoBit, &mut out);
    out.extend_from_slice(&bytes);
    out
}

fn delimited(tag: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_key(tag, WireType::LengthDelimited, &mut out);
    encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}
