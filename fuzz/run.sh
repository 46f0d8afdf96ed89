#!/usr/bin/env bash
# Runs one cargo-fuzz target on nightly: fuzz/run.sh [target] [runs] [seconds]
#   target: request_to_command | stored_record | raft_message (default: all
#           three, one after the other)
#   runs:   executions per target (default 1000000)
#   seconds: wall-clock bound per target (default 900)
# Links the RocksDB static library an earlier stable build left behind
# instead of compiling RocksDB again under nightly (ROCKSDB_LIB_DIR), and
# builds without sanitizers (-s none): the code under test is safe Rust, so
# what matters are panics, overflows, hangs and allocations.
# New inputs go to fuzz/corpus/<target>/ (minimize with `cargo fuzz cmin`),
# crashes to fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"

runs=${2:-1000000}
seconds=${3:-900}
targets=${1:-"request_to_command stored_record raft_message"}

if [[ -z "${ROCKSDB_LIB_DIR:-}" ]]; then
    build=${CARGO_TARGET_DIR:-../target}/debug/build
    lib=$(ls -t "$build"/librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -n1 || true)
    if [[ -z "$lib" ]]; then
        echo "no prebuilt librocksdb.a under $build: run a stable 'cargo build' first or set ROCKSDB_LIB_DIR" >&2
        exit 1
    fi
    export ROCKSDB_LIB_DIR=$(dirname "$lib")
fi
export ROCKSDB_STATIC=1
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-../target}/fuzz}

for target in $targets; do
    mkdir -p "corpus/$target"
    cargo +nightly fuzz run -O -s none "$target" "corpus/$target" -- \
        -runs="$runs" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
        -print_final_stats=1
done
