#!/usr/bin/env bash
# Counts while a bulk import runs: a 3-node oneid on loopback imports CARDS
# cards (as `oneid import` sends them: to the leader, 2 batches of 10 000
# in flight) while `oneid bench` runs linearizable counts against the
# nodes named by WHERE (all, leader or followers). Prints the counts' rate
# and latency, the import's rate, and the same counts on the idle cluster
# after it for comparison.
#
#   benches/import-queries.sh [CARDS] [CLIENTS] [SECONDS] [WHERE]
#                             (defaults 3000000 64 20 all)
#   OP=linked-count benches/import-queries.sh   # linked-account counts
#                                               # instead (any `bench --op`)
set -euo pipefail
cd "$(dirname "$0")/.."
CARDS=${1:-3000000}
CLIENTS=${2:-64}
SECS=${3:-20}
WHERE=${4:-all}
source benches/cluster.sh
PORTS=750
start_oneid_cluster importq "$PORTS"
leader=$(status_field "127.0.0.1:${PORTS}1" leader_id)
case "$WHERE" in
  all) COUNT_EP=$EP ;;
  leader) COUNT_EP="127.0.0.1:${PORTS}$leader" ;;
  followers) COUNT_EP=$(for i in 1 2 3; do [ "$i" = "$leader" ] || echo "127.0.0.1:${PORTS}$i"; done | paste -sd,) ;;
  *) echo "WHERE must be all, leader or followers" >&2; exit 2 ;;
esac
echo "leader=n$leader counts_on=$COUNT_EP"
applied
# A small population, registered before the import so the counts' own
# writes do not queue behind it.
count() {
  local on=$1
  shift
  "$ONEID" bench --endpoints "$on" --op "${OP:-count}" --clients "$CLIENTS" --population 1000 --run 1 "$@"
}
count "$EP" --ops 1 >/dev/null
"$ONEID" gen --out "$WORK/cards.csv" --cards "$CARDS" --seed 1
start=$(date +%s.%N)
"$ONEID" import "$WORK/cards.csv" --endpoints "$EP" --batch 10000 --concurrency 2 --timeout-ms 30000 \
  >"$WORK/import.out" 2>&1 &
import=$!
sleep 2
# Each node's apply backlog (log entries it holds but has not applied),
# sampled twice a second while the counts run: a count waits for its
# node to apply up to the leader's commit index.
backlog() {
  local i ep max=(0 0 0 0) b
  while [ -e "$WORK/sampling" ]; do
    for i in 1 2 3; do
      ep="127.0.0.1:${PORTS}$i"
      b=$(( $(status_field "$ep" last_log_index 2>/dev/null || echo 0) - $(status_field "$ep" last_applied 2>/dev/null || echo 0) ))
      [ "$b" -gt "${max[$i]}" ] && max[$i]=$b
    done
    sleep 0.5
  done
  echo "max_apply_backlog_entries n1=${max[1]} n2=${max[2]} n3=${max[3]}"
}
touch "$WORK/sampling"
backlog >"$WORK/backlog.out" &
sampler=$!
count "$COUNT_EP" --duration "$SECS" | sed 's/^/during_import /'
rm "$WORK/sampling"
wait "$sampler"
cat "$WORK/backlog.out"
apply_holds
running=no
kill -0 "$import" 2>/dev/null && running=yes
wait "$import" || { echo "import failed:"; tail -5 "$WORK/import.out"; exit 1; }
echo "import cards_per_s=$(echo "$CARDS / ($(date +%s.%N) - $start)" | bc) still_running_after_counts=$running"
count "$COUNT_EP" --duration 10 | sed 's/^/after_import /'
applied
node_warnings n "$WORK"/n{1,2,3}.log
