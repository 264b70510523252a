//! Compiles the public API (`lienthong.v1`), the sandbox helper API
//! (`lienthong.sandbox.v1`) and the operators' API (`lienthong.admin.v1`)
//! with the vendored `protoc`, and writes one file descriptor set that the
//! gateway serves through gRPC reflection.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "lienthong/v1/common.proto",
    "lienthong/v1/identity.proto",
    "lienthong/v1/health.proto",
    "lienthong/v1/education.proto",
    "lienthong/v1/transport.proto",
    "lienthong/v1/construction.proto",
    "lienthong/v1/public_services.proto",
    "lienthong/sandbox/v1/sandbox.proto",
    "lienthong/admin/v1/admin.proto",
];

const ADAPTER_PROTO: &str = "lienthong/adapter/v1/adapter.proto";

/// Imported, not compiled on their own: vendored from googleapis (prost
/// ignores the options they define; protoc needs them to read the files that
/// use them, and the descriptor sets carry them).
const VENDORED: &[&str] = &["google/api/field_behavior.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    let includes = vec![root.clone()];
    // The vendored protoc (no system protoc is needed) for both.
    //
    // The adapter protocol gets its own descriptor set: the gateway's
    // reflection must not advertise a service it does not serve. It is
    // compiled first: it imports the public API, whose module the second
    // compilation writes again with the public services' codec.
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("adapter_descriptor.bin"))
        .compile_with_config(config, &[root.join(ADAPTER_PROTO)], &includes)?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Lienthong's own codec: a request that does not decode is the caller's
    // error (INVALID_ARGUMENT), not the server's.
    tonic_prost_build::configure()
        .codec_path("crate::codec::StrictCodec")
        .file_descriptor_set_path(out_dir.join("lienthong_descriptor.bin"))
        .compile_with_config(config, &files, &includes)?;
    println!("cargo:rerun-if-changed={ADAPTER_PROTO}");
    for p in PROTOS.iter().chain(VENDORED) {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
