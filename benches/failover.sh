#!/usr/bin/env bash
# How long writes stop when the leader goes away under load: a 3-node oneid
# on loopback, CLIENTS registering for SECONDS, the leader stopped after 5 s
# with SIGKILL (a crash: the followers wait out the lease and an election
# timeout) or SIGTERM (a planned stop: the leader hands over first), or not
# at all (none: to see whether the load alone causes elections). Prints
# the bench line; max_gap_ms is the longest time with no successful
# registration anywhere (the write outage), and the number of elections
# (raft term changes) during the run: 1 after a stop, 0 if none. Raft
# timings come from the usual ONEID_* variables, e.g.
# ONEID_ELECTION_TIMEOUT_MIN_MS.
#
#   benches/failover.sh [CLIENTS] [SECONDS] [kill|term|none]
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-64}
SECS=${2:-15}
MODE=${3:-kill}
case "$MODE" in
  kill) SIGNAL=KILL ;;
  term) SIGNAL=TERM ;;
  none) SIGNAL= ;;
  *) echo "mode must be kill, term or none, not '$MODE'" >&2; exit 2 ;;
esac
source benches/cluster.sh
start_oneid_cluster failover 730
term_before=$(status_field 127.0.0.1:7301 term)
"$ONEID" bench --endpoints "$EP" --op register \
  --clients "$CLIENTS" --duration "$SECS" --timeout-ms 2000 > "$WORK/bench.out" 2>&1 &
BENCH=$!
sleep 5
leader=$(status_field 127.0.0.1:7301 leader_id)
if [ -n "$SIGNAL" ]; then
  echo "stopping leader n$leader (pid ${PID[$leader]}) with SIG$SIGNAL"
  kill -s "$SIGNAL" "${PID[$leader]}"
fi
wait "$BENCH" || true
grep -v '^first error' "$WORK/bench.out"
live=127.0.0.1:730$(( leader % 3 + 1 ))
after=$(status_field "$live" leader_id)
term_after=$(status_field "$live" term)
echo "leader: n$leader -> n$after, elections during the run: $(( term_after - term_before ))"
