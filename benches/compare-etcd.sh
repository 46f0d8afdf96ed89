#!/usr/bin/env bash
# Side by side: a 3-member etcd and a 3-node oneid on loopback, each member
# with its own data dir on the same disk and fsync on, driven by the same
# load generator (`oneid bench`) with the same client counts and durations.
# Prints one line per run and the oneid/etcd ratios. With ROUNDS > 1 each op
# is measured that many times, etcd and oneid alternately, and the summary
# gives the median of each side and the lowest and highest per-round ratio:
# on a shared machine one run moves by ±20 %, so one ratio proves little.
# oneid is measured twice per op and round: one gRPC call per operation
# ("unary", as etcd's client sends them) and all clients' calls to a node
# over one Batch/Calls stream ("batch"); MODES="unary" or MODES="batch"
# measures one of them. OPS="link" (or any of register count mixed link
# linked-count) measures only those ops, in that order. Each run also
# prints the CPU its side's three server processes spent per operation
# (from /proc, `server_cpu_us_per_op`), and the summary its median ratio:
# on two shared cores CPU per operation is what both sides run out of.
# It counts the whole `oneid bench` call, so for count, mixed, link and
# linked-count it includes the 10 000 numbers (etcd: keys) written first.
# THREADS_PER_MEMBER=N gives every member of both sides N threads: oneid
# nodes N async workers (`--worker-threads`), etcd members GOMAXPROCS=N.
# Unset, each side keeps its default of one per core, so three members on
# two cores run six threads each way. BENCH_THREADS=N runs the load
# generator, for both sides, on N async workers instead of one per core.
#
#   benches/compare-etcd.sh [CLIENTS] [SECONDS] [ROUNDS]   (defaults 64 10 1)
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-64}
SECS=${2:-10}
ROUNDS=${3:-1}
read -ra MODES <<<"${MODES:-unary batch}"
read -ra OPS <<<"${OPS:-register count mixed link linked-count}"
command -v etcd >/dev/null || { echo "etcd not found: apt-get install etcd-server" >&2; exit 1; }
# Builds oneid (ONEID) and brings node_warnings and proc_ticks; this script
# starts its own cluster on fixed ports beside etcd's.
source benches/cluster.sh
WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/oneid-compare.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# etcd: 3 members, default fsync behaviour.
CL="e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803"
for i in 1 2 3; do
  GOMAXPROCS=${THREADS_PER_MEMBER:-${GOMAXPROCS:-}} etcd --name "e$i" --data-dir "$WORK/etcd$i" \
    --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
    --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
    --initial-cluster "$CL" --initial-cluster-state new --log-level error >"$WORK/etcd$i.log" 2>&1 &
  PIDS+=($!)
done

# oneid: 3 nodes.
OC="1=127.0.0.1:7201,2=127.0.0.1:7202,3=127.0.0.1:7203"
export ONEID_PEPPER=compare-etcd-pepper-0123456789
# Plaintext on both sides, so the comparison is of the databases, not TLS.
export ONEID_INSECURE=true
for i in 1 2 3; do
  # shellcheck disable=SC2046 # no flag, or the flag and its value
  "$ONEID" serve --node-id "$i" --addr "127.0.0.1:720$i" --data-dir "$WORK/oneid$i" --initial-cluster "$OC" \
    $(member_threads) 2>"$WORK/oneid$i.log" &
  PIDS+=($!)
done
sleep 3
"$ONEID" status --endpoints 127.0.0.1:7201 >/dev/null

E="127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793"
O="127.0.0.1:7201,127.0.0.1:7202,127.0.0.1:7203"
declare -A R
HZ=$(getconf CLK_TCK)
run() { # side endpoints op run round [flags]
  local line side=$1 target=${1%%-*} started servers t0 t1 ops cpu
  # etcd's members were started first, then oneid's nodes.
  if [ "$target" = etcd ]; then servers=("${PIDS[@]:0:3}"); else servers=("${PIDS[@]:3:3}"); fi
  started=$(date -u +%T)
  t0=$(proc_ticks "${servers[@]}")
  line=$(ONEID_WORKER_THREADS=${BENCH_THREADS:-0} "$ONEID" bench --target "$target" --endpoints "$2" --op "$3" --clients "$CLIENTS" --duration "$SECS" --run "$4" "${@:6}" 2>"$WORK/bench.err") \
    || { echo "bench --target $target --op $3 ${*:6} failed:" >&2; cat "$WORK/bench.err" >&2; exit 1; }
  t1=$(proc_ticks "${servers[@]}")
  ops=$(sed -E 's/.* ops=([0-9]+) .*/\1/' <<<"$line")
  cpu=$(awk -v t="$((t1 - t0))" -v hz="$HZ" -v ops="$ops" 'BEGIN { printf "%.1f", (ops > 0 ? t / hz * 1e6 / ops : 0) }')
  # The start time, to match a long write stop (max_gap_ms) with the
  # node warnings printed at the end.
  echo "$started $side $line server_cpu_us_per_op=$cpu"
  R["$side-$3-ops-$5"]=$(sed -E 's/.*ops_per_s=([0-9]+).*/\1/' <<<"$line")
  R["$side-$3-p99-$5"]=$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$line")
  R["$side-$3-cpu-$5"]=$cpu
}
n=1
for round in $(seq "$ROUNDS"); do
  for op in "${OPS[@]}"; do
    # A fresh --run per measurement: its registrations never collide with
    # an earlier round's.
    run etcd "$E" "$op" "$n" "$round"
    for mode in "${MODES[@]}"; do
      n=$((n + 1))
      case $mode in
        unary) run oneid-unary "$O" "$op" "$n" "$round" ;;
        batch) run oneid-batch "$O" "$op" "$n" "$round" --batch-stream ;;
        *) echo "unknown mode $mode (unary, batch)" >&2; exit 2 ;;
      esac
    done
    n=$((n + 1))
  done
done
echo
for op in "${OPS[@]}"; do for mode in "${MODES[@]}"; do
  for round in $(seq "$ROUNDS"); do
    echo "${R[oneid-$mode-$op-ops-$round]} ${R[etcd-$op-ops-$round]} ${R[oneid-$mode-$op-p99-$round]} ${R[etcd-$op-p99-$round]}" \
      "${R[oneid-$mode-$op-cpu-$round]} ${R[etcd-$op-cpu-$round]}"
  done | awk -v op="$op ($mode)" '
    function median(a, n,   i, j, t) {
      for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { o[NR] = $1; e[NR] = $2; op99[NR] = $3; ep99[NR] = $4; oc[NR] = $5; ec[NR] = $6; r = $1 / $2
      lo = (NR == 1 || r < lo) ? r : lo; hi = (NR == 1 || r > hi) ? r : hi }
    END {
      mo = median(o, NR); me = median(e, NR); mp = median(op99, NR); ep = median(ep99, NR)
      mc = median(oc, NR); ecm = median(ec, NR)
      printf "%-16s throughput oneid/etcd = %.2fx   p99 oneid/etcd = %.2f", op, mo / me, mp / ep
      if (ecm > 0) printf "   server CPU per op oneid/etcd = %.2f (%.1f vs %.1f us)", mc / ecm, mc, ecm
      if (NR > 1) printf "   (medians of %d rounds: %d vs %d ops/s; per-round ratios %.2f-%.2fx)", NR, mo, me, lo, hi
      printf "\n"
    }'
done; done
node_warnings oneid "$WORK"/oneid{1,2,3}.log
