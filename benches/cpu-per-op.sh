#!/usr/bin/env bash
# CPU per operation: a 3-node oneid on loopback under `oneid bench`, with the
# CPU time the three node processes and the load generator spent, divided by
# the operations done. On this shared 2-core machine throughput moves ±20 %
# between minutes; CPU per operation moves less and says where a change
# helps, and per node it shows the leader's share against a follower's.
# Also prints operations per raft log entry: for register and link, how
# many commands each entry carried (the bench's set-up writes, e.g. the
# numbers a link or count run registers first, are in the log too).
#
#   benches/cpu-per-op.sh [OP] [CLIENTS] [SECONDS]   (defaults register 64 10)
#   BENCH_ARGS=--spread-writes benches/cpu-per-op.sh   # more `oneid bench` flags
#   BENCH_THREADS=1 THREADS_PER_MEMBER=1 benches/cpu-per-op.sh   # the load generator
#     on one async worker, each node on one (see benches/cluster.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
OP=${1:-register}
CLIENTS=${2:-64}
SECS=${3:-10}
source benches/cluster.sh
start_oneid_cluster cpu 745


hz=$(getconf CLK_TCK)
n0=$(node_ticks)
e0=$(status_field "${EP%%,*}" last_log_index)
# In a subshell of its own, `times` reports only the load generator's CPU.
out=$(
  # shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
  ONEID_WORKER_THREADS=${BENCH_THREADS:-0} "$ONEID" bench --endpoints "$EP" --op "$OP" --clients "$CLIENTS" --duration "$SECS" --run 1 ${BENCH_ARGS:-}
  times
)
n1=$(node_ticks)
e1=$(status_field "${EP%%,*}" last_log_index)
line=$(grep ops_per_s <<<"$out")
echo "$line"
ops=$(sed -E 's/.* ops=([0-9]+) .*/\1/' <<<"$line")
# `times`' second line: the children's user and system time, as 0m1.234s.
client_s=$(tail -1 <<<"$out" | awk '{
  total = 0
  for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); total += p[1] * 60 + p[2] }
  print total }')
awk -v n0="$n0" -v n1="$n1" -v leader="$(status_field "${EP%%,*}" leader_id)" -v hz="$hz" -v ops="$ops" -v c="$client_s" -v e="$((e1 - e0))" 'BEGIN {
  if (ops == 0) { print "no operations completed" > "/dev/stderr"; exit 1 }
  split(n0, a, " "); split(n1, b, " ")
  for (i = 1; i <= 3; i++) {
    us = (b[i] - a[i]) / hz * 1e6 / ops; total += us
    by = by sprintf(" n%d%s=%.1f", i, i == leader ? "(leader)" : "", us)
  }
  printf "node_cpu_us_per_op=%.1f client_cpu_us_per_op=%.1f ops_per_log_entry=%.1f\n",
    total, c * 1e6 / ops, (e > 0 ? ops / e : 0)
  print "node_cpu_us_per_op by node:" by
}'
