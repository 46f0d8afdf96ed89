# Sourced by the bench scripts: builds oneid and starts a 3-node cluster on
# loopback that is killed (and its data removed) when the script exits.
#
#   start_oneid_cluster NAME PORT_PREFIX   # nodes on 127.0.0.1:<PORT_PREFIX>1..3
#
# Sets ONEID (the binary), WORK (data and logs), PID[1..3], EP (endpoints),
# PREFIX (the port prefix).
#
#   status_field ENDPOINT NAME   # a numeric field of that node's status
#   node_ticks                   # each node's user+system clock ticks
#   proc_ticks PID...            # those processes' ticks, summed
#   node_warnings LABEL LOG...   # each log's warning count, the last ones
#   applied                      # each node's last applied index and term
#   apply_holds                  # AppendEntries each node held to catch up
#
# Each node also serves /metrics on 127.0.0.1:1<PORT_PREFIX><i>.
#
# ONEID_BIN=PATH runs that binary instead of building one (to compare two
# builds, run the script once with each). BENCH_DIR=DIR puts the data dirs
# there instead of /tmp (another disk; /dev/shm shows what fsync costs).
# THREADS_PER_MEMBER=N starts each node with N async worker threads
# (`--worker-threads`) instead of one per core of the machine: three
# nodes on two cores run six workers by default. The load generator keeps
# its default unless the script takes BENCH_THREADS.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/oneid-target}"
if [ -n "${ONEID_BIN:-}" ]; then
  ONEID=$ONEID_BIN
else
  cargo build --quiet --bin oneid
  ONEID="$CARGO_TARGET_DIR/debug/oneid"
fi
declare -A PID

status_field() {
  "$ONEID" status --json --endpoints "$1" | sed -E "s/.*\"$2\":([0-9]+).*/\1/"
}

# What the nodes warned about (AppendEntries timeouts, elections), less
# the start-up election's chatter: a count per log (LABEL1=…, in the order
# given), then the last 8 over all logs, by time, with the time of day so
# they can be placed in the runs printed before.
node_warnings() {
  local label=$1 i=0 f
  shift
  warnings() { grep -h -E ' (WARN|ERROR) ' "$@" | grep -v -e 'because vote changed' -e 'insecure' || true; }
  for f in "$@"; do i=$((i + 1)); printf '%s%s warnings=%s  ' "$label" "$i" "$(warnings "$f" | wc -l)"; done; echo
  warnings "$@" | sort | cut -c12-19,28- | cut -c1-200 | tail -8
}

# Each node's last applied log index and raft term: a follower far behind
# the leader makes counts sent to it wait for its apply (up to the request
# timeout); a term that grew since the start means an election (a fresh
# cluster elects its first leader in term 1 or 2).
applied() {
  local i ep
  for i in 1 2 3; do
    ep="127.0.0.1:${PREFIX}$i"
    printf 'n%s last_applied=%s term=%s  ' "$i" "$(status_field "$ep" last_applied 2>/dev/null || echo '?')" "$(status_field "$ep" term 2>/dev/null || echo '?')"
  done
  echo
}

# How often, and for how long in all, each node held back replication
# while it caught up in applying (Design → Follower apply brake).
apply_holds() {
  local i m
  for i in 1 2 3; do
    m=$(curl -s "127.0.0.1:1${PREFIX}$i/metrics" || true)
    printf 'n%s apply_holds=%s held_s=%s  ' "$i" \
      "$(sed -n 's/^oneid_raft_apply_holds_total //p' <<<"$m")" \
      "$(awk '/^oneid_raft_apply_held_seconds_total / { printf "%.2f", $2 }' <<<"$m")"
  done
  echo
}

member_threads() { # the serve flag for THREADS_PER_MEMBER, if set
  [ -z "${THREADS_PER_MEMBER:-}" ] || echo "--worker-threads $THREADS_PER_MEMBER"
}

proc_ticks() { # the user+system clock ticks of the given processes, summed
  local sum=0 p f
  for p in "$@"; do
    read -ra f <"/proc/$p/stat"
    # Fields 14 and 15 (utime, stime); the command names in field 2 (oneid,
    # etcd) have no spaces, so the split is by position.
    sum=$((sum + f[13] + f[14]))
  done
  echo "$sum"
}

node_ticks() { # space separated, node 1 first
  local i
  for i in 1 2 3; do
    echo -n "$(proc_ticks "${PID[$i]}") "
  done
}

start_oneid_cluster() {
  local name=$1 prefix=$2 i oc leader leaders
  PREFIX=$prefix
  WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/oneid-$name.XXXXXX")
  trap 'for p in "${PID[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
  oc="1=127.0.0.1:${prefix}1,2=127.0.0.1:${prefix}2,3=127.0.0.1:${prefix}3"
  EP="127.0.0.1:${prefix}1,127.0.0.1:${prefix}2,127.0.0.1:${prefix}3"
  export ONEID_PEPPER="$name-bench-pepper-0123456789"
  # Plaintext, like the etcd it is compared with; the load generator's mixed
  # workload needs both the carrier and the query role.
  export ONEID_INSECURE=true
  for i in 1 2 3; do
    # shellcheck disable=SC2046 # no flag, or the flag and its value
    "$ONEID" serve --node-id "$i" --addr "127.0.0.1:${prefix}$i" --data-dir "$WORK/n$i" \
      --http-addr "127.0.0.1:1${prefix}$i" --initial-cluster "$oc" $(member_threads) 2>"$WORK/n$i.log" &
    PID[$i]=$!
  done
  # Ready when every node names the same leader (a follower that does not
  # know it yet would refuse the first writes).
  for _ in $(seq 100); do
    leaders=$(for i in 1 2 3; do
      status_field "127.0.0.1:${prefix}$i" leader_id 2>/dev/null || true
    done)
    leader=$(sort -u <<<"$leaders")
    [ "$(wc -l <<<"$leaders")" = 3 ] && [ "$(wc -l <<<"$leader")" = 1 ] && [ "$leader" != 0 ] && return 0
    sleep 0.2
  done
  echo "no leader elected; logs in $WORK" >&2
  return 1
}
