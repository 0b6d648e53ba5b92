//! Compiles `proto/raft.proto` and `proto/governance.proto` with `protox`
//! (pure Rust), so building this crate never needs `protoc` on the machine.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_dir = manifest_dir.join("../../proto");
    let proto_file = proto_dir.join("raft.proto");
    println!("cargo:rerun-if-changed={}", proto_file.display());

    let descriptors = protox::compile([&proto_file], [&proto_dir])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;

    // The public API. Its certificate types are the certificate crate's;
    // the descriptor set (with certificate.proto) feeds server reflection.
    let api_file = proto_dir.join("governance.proto");
    println!("cargo:rerun-if-changed={}", api_file.display());
    println!(
        "cargo:rerun-if-changed={}",
        proto_dir.join("certificate.proto").display()
    );
    let api = protox::compile([&api_file], [&proto_dir])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("governance_descriptor.bin"),
        prost::Message::encode_to_vec(&api),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .extern_path(
            ".neuroshard.certificate.v1",
            "::neuroshard_certificate::proto",
        )
        .compile_fds(api)?;
    Ok(())
}
