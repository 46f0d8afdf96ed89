//! oneid: the national "one ID, check all cards" registry as a replicated,
//! linearizable database (openraft on RocksDB, served over gRPC).

pub mod api;
pub mod apply;
pub mod cli;
pub mod command;
pub mod config;
pub mod domain;
pub mod footprint;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod idkey;
pub mod limits;
pub mod node;
pub mod observe;
pub mod query_audit;
pub mod reader;
pub mod rekey;
pub mod security;
pub mod state_machine;
pub mod sweeper;

/// Generated gRPC code for the public API (package `oneid.v1`).
pub mod pb {
    tonic::include_proto!("oneid.v1");

    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("oneid_descriptor");
}

/// etcd's KV client (a wire-compatible subset), for `oneid bench --target etcd`.
pub mod etcdpb {
    tonic::include_proto!("etcdserverpb");
}

// The stale-read switch exists only to prove the chaos checker can fail; a
// release binary with it would silently break linearizability.
#[cfg(all(feature = "unsafe-stale-reads", oneid_release_build))]
compile_error!("the unsafe-stale-reads feature is test-only and must never be built in release");
