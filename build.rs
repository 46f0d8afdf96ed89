fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The dev profile runs without debug assertions too (Cargo.toml), so
    // the release-only guards in src/lib.rs key on the profile itself.
    println!("cargo::rustc-check-cfg=cfg(oneid_release_build)");
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        println!("cargo::rustc-cfg=oneid_release_build");
    }
    // A vendored protoc, so a fresh machine needs no protobuf-compiler package.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the env concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/oneid/v1/registry.proto");
    println!("cargo:rerun-if-changed=proto/oneid/v1/admin.proto");
    println!("cargo:rerun-if-changed=proto/oneid/v1/batch.proto");
    println!("cargo:rerun-if-changed=proto/etcd/kv.proto");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // A batch's calls and replies pass on as slices of the message
        // they came in, not copies.
        .bytes(".oneid.v1.BatchCall.request")
        .bytes(".oneid.v1.BatchReply.response")
        .file_descriptor_set_path(out.join("oneid_descriptor.bin"))
        .compile_protos(
            &[
                "proto/oneid/v1/registry.proto",
                "proto/oneid/v1/admin.proto",
                "proto/oneid/v1/batch.proto",
            ],
            &["proto"],
        )?;
    // etcd's KV client only, for side-by-side benchmarks.
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&["proto/etcd/kv.proto"], &["proto"])?;
    Ok(())
}
