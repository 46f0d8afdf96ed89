#!/usr/bin/env bash
# How long writes stop when the leader goes away under load: a 3-node oneid
# on loopback, CLIENTS registering for SECONDS, the leader stopped after 5 s
# with SIGKILL (a crash: the followers wait out the lease and an election
# timeout) or SIGTERM (a planned stop: the leader hands over first). Prints
# the bench line; max_gap_ms is the longest time with no successful
# registration anywhere (the write outage). Raft timings come from the
# usual ONEID_* variables, e.g. ONEID_ELECTION_TIMEOUT_MIN_MS.
#
#   benches/failover.sh [CLIENTS] [SECONDS] [kill|term]
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-64}
SECS=${2:-15}
MODE=${3:-kill}
case "$MODE" in
  kill) SIGNAL=KILL ;;
  term) SIGNAL=TERM ;;
  *) echo "mode must be kill or term, not '$MODE'" >&2; exit 2 ;;
esac
source benches/cluster.sh
start_oneid_cluster failover 730
"$ONEID" bench --endpoints "$EP" --op register \
  --clients "$CLIENTS" --duration "$SECS" --timeout-ms 2000 > "$WORK/bench.out" 2>&1 &
BENCH=$!
sleep 5
leader=$("$ONEID" status --json --endpoints 127.0.0.1:7301 | sed -E 's/.*"leader_id":([0-9]+).*/\1/')
echo "stopping leader n$leader (pid ${PID[$leader]}) with SIG$SIGNAL"
kill -s "$SIGNAL" "${PID[$leader]}"
wait "$BENCH" || true
grep -v '^first error' "$WORK/bench.out"
after=$("$ONEID" status --json --endpoints 127.0.0.1:730$(( leader % 3 + 1 )) | sed -E 's/.*"leader_id":([0-9]+).*/\1/')
echo "new leader: n$after"
