//! Generates the server side of Centrifugo's proxy service (`proto/proto/proxy.proto`) for the
//! instant GRPC backend of `gyre-bench hook-backend`, with protox (no system `protoc`). The messages are gyre-proto's own.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let schema = "../proto/proto/proxy.proto";
    println!("cargo:rerun-if-changed={schema}");
    let descriptors = protox::compile([schema], ["../proto/proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .build_transport(false)
        .extern_path(".centrifugal.centrifugo.proxy", "::gyre_proto::proxy")
        .compile_fds(descriptors)?;
    Ok(())
}
