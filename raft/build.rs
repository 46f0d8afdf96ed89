fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc, so a fresh machine needs no protobuf-compiler package.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the env concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/raft.proto");
    tonic_prost_build::configure()
        .bytes(".")
        .compile_protos(&["proto/raft.proto"], &["proto"])?;
    Ok(())
}
