#!/usr/bin/env bash
# CI chaos smoke (a few minutes): a real run under kill, pause and partition
# faults must be valid, and a build that serves stale reads must be caught.
# Needs root (network namespaces, iptables). Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/oneid-target}"
bin="$CARGO_TARGET_DIR/debug"
runs="${ONEID_JEPSEN_RUNS:-$CARGO_TARGET_DIR/jepsen-runs}"
mkdir -p "$runs"

# The test-only stale-read server, kept under its own name. Cargo caches each
# feature set separately, so switching back and forth does not rebuild.
cargo build --quiet -p oneid --bin oneid --features unsafe-stale-reads
cp "$bin/oneid" "$bin/oneid-stale-reads"
cargo build --quiet --workspace --bins

echo "== jepsen smoke: kill + pause + partition + membership, must be valid"
"$bin/oneid-jepsen" --time-limit "${ONEID_JEPSEN_TIME:-60}" --nemesis all \
  --seed "${ONEID_JEPSEN_SEED:-7}" --out "$runs/smoke-$(date +%s)"

echo "== jepsen smoke: stale reads under partitions, must be caught"
"$bin/oneid-jepsen" --time-limit 20 --nemesis partition --seed 3 \
  --oneid "$bin/oneid-stale-reads" --expect-violation --out "$runs/stale-$(date +%s)"

# Keep the last few runs (histories, logs, data dirs) for inspection.
ls -dt "$runs"/*/ 2>/dev/null | tail -n +7 | xargs -r rm -rf || true
