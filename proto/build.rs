//! Compiles `proto/client.proto` (the client protocol) and `proto/proxy.proto` (the backend hook
//! messages) with protox (no system `protoc`) and prost-build.
//!
//! Every message also derives serde so that the JSON codec follows the Centrifugo wire rules from
//! the schema itself: keys are the proto field names, zero values are omitted, and `bytes` fields
//! carry raw JSON (see `codec::json::raw_json_bytes`). The per-field attributes are derived from
//! the descriptor so that a field added to the schema can never be forgotten here.

use prost_build::Config;
use protox::prost_reflect::prost_types::{
    DescriptorProto, FileDescriptorSet,
    field_descriptor_proto::{Label, Type},
};

const SCHEMA: &str = "proto/client.proto";
const PROXY_SCHEMA: &str = "proto/proxy.proto";
/// The proxy schema's package: its JSON comes from application backends, so `null` payloads
/// count as absent and 64-bit numbers may be strings (see `codec::json`).
const PROXY_PACKAGE: &str = "centrifugal.centrifugo.proxy";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={SCHEMA}");
    println!("cargo:rerun-if-changed={PROXY_SCHEMA}");
    let descriptors = protox::compile([SCHEMA, PROXY_SCHEMA], ["proto"])?;

    let mut config = Config::new();
    config.bytes(["."]);
    config.type_attribute(
        ".",
        "#[derive(serde::Serialize, serde::Deserialize)]\n#[serde(default)]",
    );
    add_json_field_attributes(&mut config, &descriptors);
    config.compile_fds(descriptors)?;
    Ok(())
}

fn add_json_field_attributes(config: &mut Config, descriptors: &FileDescriptorSet) {
    for file in &descriptors.file {
        let package = file.package();
        let lenient = package == PROXY_PACKAGE;
        for message in &file.message_type {
            let path = format!(".{package}.{}", message.name());
            add_message_attributes(config, &path, message, lenient);
        }
    }
}

fn add_message_attributes(
    config: &mut Config,
    path: &str,
    message: &DescriptorProto,
    lenient: bool,
) {
    for field in &message.field {
        let field_path = format!("{path}.{}", field.name());
        let single = field.label() != Label::Repeated;
        let is_bytes = field.r#type() == Type::Bytes && single;
        let is_int64 = matches!(field.r#type(), Type::Int64 | Type::Uint64) && single;
        let attribute = match (is_bytes, is_int64, lenient) {
            (true, _, false) => {
                "#[serde(with = \"crate::codec::json::raw_json_bytes\", skip_serializing_if = \"::bytes::Bytes::is_empty\")]"
            }
            (true, _, true) => {
                "#[serde(serialize_with = \"crate::codec::json::raw_json_bytes::serialize\", deserialize_with = \"crate::codec::json::raw_json_or_null\", skip_serializing_if = \"::bytes::Bytes::is_empty\")]"
            }
            (false, true, true) => {
                "#[serde(deserialize_with = \"crate::codec::json::number_or_string\", skip_serializing_if = \"crate::codec::json::is_zero_value\")]"
            }
            _ => "#[serde(skip_serializing_if = \"crate::codec::json::is_zero_value\")]",
        };
        config.field_attribute(field_path, attribute);
    }
}
