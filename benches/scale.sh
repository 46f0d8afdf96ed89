#!/usr/bin/env bash
# Import and count at scale: a 3-node oneid on loopback; import SMALL cards,
# measure linearizable counts; import up to LARGE cards, measure counts
# again right away and once the nodes are idle (compaction done); print
# import rates and the nodes' CPU per card, count latencies and each
# node's RSS.
#
#   benches/scale.sh [SMALL] [LARGE]      (defaults 100000 10000000)
set -euo pipefail
cd "$(dirname "$0")/.."
SMALL=${1:-100000}
LARGE=${2:-10000000}
source benches/cluster.sh
PORTS=740
start_oneid_cluster scale "$PORTS"
# The importer's own CPU too: it shares the two cores with the nodes.
TIMEFORMAT="import wall_s=%R importer_cpu_s=%U+%S"
ticks() { proc_ticks "${PID[1]}" "${PID[2]}" "${PID[3]}"; }
hz=$(getconf CLK_TCK)
# Imports FILE with CARDS rows; prints the three nodes' CPU per card too.
import_file() {
  local t0
  t0=$(ticks)
  time "$ONEID" import "$1" --endpoints "$EP" --batch 10000 --concurrency 2 --timeout-ms 30000
  echo "import node_cpu_us_per_card=$(( ($(ticks) - t0) * 1000000 / hz / $2 ))"
}
rss() { for i in 1 2 3; do printf 'n%s rss_mib=%s  ' "$i" $(( $(ps -o rss= -p "${PID[$i]}") / 1024 )); done; echo; }
"$ONEID" gen --out "$WORK/small.csv" --cards "$SMALL" --seed 1
import_file "$WORK/small.csv" "$SMALL"
"$ONEID" bench --endpoints "$EP" --op count --clients 64 --duration 10 --run 1
rss

"$ONEID" gen --out "$WORK/large.csv" --cards $(( LARGE - SMALL )) --seed 2 --first-serial "$SMALL"
import_file "$WORK/large.csv" $(( LARGE - SMALL ))
# The work dir goes when the script exits: show what was refused, if anything.
head -5 "$WORK/large.csv.rejects" 2>/dev/null || true
applied
apply_holds
rss
"$ONEID" bench --endpoints "$EP" --op count --clients 64 --duration 10 --run 2
rss
# The counts above may have run while the nodes still compacted what the
# import wrote. Measure again once they are idle (their CPU below a tenth
# of a core over 2 s, waiting at most 5 min): the database at rest.
waited=0
while [ "$waited" -lt 300 ]; do
  t0=$(ticks); sleep 2; waited=$((waited + 2))
  [ $(( ($(ticks) - t0) * 10 )) -lt $(( 2 * hz )) ] && break
done
echo "idle after ${waited}s"
"$ONEID" bench --endpoints "$EP" --op count --clients 64 --duration 10 --run 3
rss
applied
# What the nodes warned about over the run: a count that failed above
# names its reason in the bench's `first error`; the node's side is here.
node_warnings n "$WORK"/n{1,2,3}.log
# Read rounds in which a follower missed the heartbeat window (the leader
# asks the quorum again; only a second of such misses fails the reads).
for i in 1 2 3; do printf 'n%s read_round_misses=%s  ' "$i" "$(grep -c 'confirming leadership for read' "$WORK/n$i.log" || true)"; done; echo
# RocksDB's own account of write stalls (a stalled apply holds up reads
# that wait for it).
for i in 1 2 3; do printf 'n%s rocksdb_stalls=%s  ' "$i" "$(cat "$WORK/n$i/db"/LOG* 2>/dev/null | grep -c -E 'Stalling writes|Stopping writes' || true)"; done; echo
du -sh "$WORK"/n1
