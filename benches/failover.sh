#!/usr/bin/env bash
# How long writes stop when the leader is killed with SIGKILL under load:
# a 3-node oneid on loopback, 64 clients registering for SECONDS, the leader
# killed after 5 s. Prints the bench line; max_gap_ms is the longest time
# with no successful registration anywhere (the write outage).
#
#   benches/failover.sh [CLIENTS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-64}
SECS=${2:-15}
source benches/cluster.sh
start_oneid_cluster failover 730
"$ONEID" bench --endpoints "$EP" --op register \
  --clients "$CLIENTS" --duration "$SECS" --timeout-ms 2000 > "$WORK/bench.out" 2>&1 &
BENCH=$!
sleep 5
leader=$("$ONEID" status --json --endpoints 127.0.0.1:7301 | sed -E 's/.*"leader_id":([0-9]+).*/\1/')
echo "killing leader n$leader (pid ${PID[$leader]}) with SIGKILL"
kill -9 "${PID[$leader]}"
wait "$BENCH" || true
grep -v '^first error' "$WORK/bench.out"
after=$("$ONEID" status --json --endpoints 127.0.0.1:730$(( leader % 3 + 1 )) | sed -E 's/.*"leader_id":([0-9]+).*/\1/')
echo "new leader: n$after"
