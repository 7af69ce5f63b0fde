//! Compiles `proto/client.proto` with protox (no system `protoc`) and prost-build.
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={SCHEMA}");
    let descriptors = protox::compile([SCHEMA], ["proto"])?;

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
        for message in &file.message_type {
            add_message_attributes(config, &format!(".{package}.{}", message.name()), message);
        }
    }
}

fn add_message_attributes(config: &mut Config, path: &str, message: &DescriptorProto) {
    for field in &message.field {
        let field_path = format!("{path}.{}", field.name());
        let is_bytes = field.r#type() == Type::Bytes && field.label() != Label::Repeated;
        let attribute = if is_bytes {
            "#[serde(with = \"crate::codec::json::raw_json_bytes\", skip_serializing_if = \"::bytes::Bytes::is_empty\")]"
        } else {
            "#[serde(skip_serializing_if = \"crate::codec::json::is_zero_value\")]"
        };
        config.field_attribute(field_path, attribute);
    }
}
