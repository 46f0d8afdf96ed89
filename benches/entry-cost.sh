#!/usr/bin/env bash
# What a raft log entry costs, apart from the commands in it: runs
# `benches/cpu-per-op.sh` at several client counts (more clients, more
# commands per entry) and fits, by least squares over the runs,
#
#   node CPU per op = per_op + per_entry / (ops per log entry)
#
# per_op is what each command costs the three nodes (its records, its
# rules, its response); per_entry what every log entry costs them however
# many commands it carries (AppendEntries and commit round trips, the
# log's append and fsync, waking threads, an apply call). The same fit is
# printed for the leader and for one follower. The fit assumes both stay
# constant across the client counts; the printed residuals show how well
# that holds.
#
# For writes (register, link): a read adds no log entry of its own.
#
#   benches/entry-cost.sh [OP] [SECONDS] [CLIENTS...]   (defaults register 10 32 64 128 256)
#   BENCH_ARGS=--batch-stream benches/entry-cost.sh     # batch streams (more `oneid bench` flags)
set -euo pipefail
cd "$(dirname "$0")/.."
OP=${1:-register}
SECS=${2:-10}
shift 2 2>/dev/null || shift $#
CLIENTS=("$@")
[ ${#CLIENTS[@]} -gt 0 ] || CLIENTS=(32 64 128 256)

runs=""
for c in "${CLIENTS[@]}"; do
  out=$(benches/cpu-per-op.sh "$OP" "$c" "$SECS")
  echo "$out" | grep -E 'ops_per_s|node_cpu'
  total=$(sed -nE 's/^node_cpu_us_per_op=([0-9.]+) .*ops_per_log_entry=([0-9.]+).*/\1 \2/p' <<<"$out")
  # The leader is the node tagged (leader); the first other one stands for
  # the followers.
  nodes=$(sed -nE 's/^node_cpu_us_per_op by node://p' <<<"$out")
  leader=$(tr ' ' '\n' <<<"$nodes" | sed -nE 's/^n[0-9]\(leader\)=([0-9.]+)$/\1/p')
  follower=$(tr ' ' '\n' <<<"$nodes" | sed -nE 's/^n[0-9]=([0-9.]+)$/\1/p' | head -1)
  runs+="$c ${total% *} ${total#* } $leader $follower"$'\n'
done

awk '
  NF == 5 && $3 > 0 { n++; c[n] = $1; k[n] = $3; x[n] = 1 / $3; y["all", n] = $2; y["leader", n] = $4; y["follower", n] = $5 }
  END {
    if (n < 2) { print "need two runs or more that wrote log entries" > "/dev/stderr"; exit 1 }
    # The same x (1 / ops per entry) for every fit: its sums once.
    for (i = 1; i <= n; i++) { sx += x[i]; sxx += x[i] * x[i] }
    d = n * sxx - sx * sx
    if (d <= 0) { print "every run had as many ops per entry: nothing to fit" > "/dev/stderr"; exit 1 }
    split("all leader follower", who, " ")
    for (w = 1; w <= 3; w++) {
      sy = sxy = 0
      for (i = 1; i <= n; i++) { sy += y[who[w], i]; sxy += x[i] * y[who[w], i] }
      e[w] = (n * sxy - sx * sy) / d
      r[w] = (sy - e[w] * sx) / n
      res = ""
      for (i = 1; i <= n; i++) res = res sprintf(" %+.1f", y[who[w], i] - (r[w] + e[w] * x[i]))
      printf "fit %-8s per_op_us=%.1f per_entry_us=%.0f residuals_us=%s\n", who[w], r[w], e[w], res
    }
    # How much of the node CPU per op of each run was its share of entries.
    for (i = 1; i <= n; i++)
      printf "clients=%d ops_per_log_entry=%.1f node_cpu_us_per_op=%.1f of_which_entry_share=%.0f%%\n",
        c[i], k[i], y["all", i], 100 * e[1] * x[i] / y["all", i]
  }' <<<"$runs"
