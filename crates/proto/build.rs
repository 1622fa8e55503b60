//! Compiles the `.proto` contracts with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/motorpool/identity.proto",
        "proto/motorpool/payments.proto",
        "proto/motorpool/inventory.proto",
        "proto/motorpool/configurator.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(descriptors)?;
    Ok(())
}
