//! Generates the gRPC server and client from `proto/` without protoc.
//!
//! protox compiles the protos in-process. The descriptor set for server
//! reflection is written with protox's own encoder: re-encoding through
//! prost-types would drop the `google.api.http` options that the JSON gateway
//! and grpcurl rely on.

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/monitor/v1/monitor.proto"];
    println!("cargo:rerun-if-changed=proto");

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(protos)?;

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("monitor_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
