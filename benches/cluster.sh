# Sourced by the bench scripts: builds oneid and starts a 3-node cluster on
# loopback that is killed (and its data removed) when the script exits.
#
#   start_oneid_cluster NAME PORT_PREFIX   # nodes on 127.0.0.1:<PORT_PREFIX>1..3
#
# Sets ONEID (the binary), WORK (data and logs), PID[1..3], EP (endpoints).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/oneid-target}"
cargo build --quiet --bin oneid
ONEID="$CARGO_TARGET_DIR/debug/oneid"
declare -A PID

start_oneid_cluster() {
  local name=$1 prefix=$2 i oc leader leaders
  WORK=$(mktemp -d "/tmp/oneid-$name.XXXXXX")
  trap 'for p in "${PID[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
  oc="1=127.0.0.1:${prefix}1,2=127.0.0.1:${prefix}2,3=127.0.0.1:${prefix}3"
  EP="127.0.0.1:${prefix}1,127.0.0.1:${prefix}2,127.0.0.1:${prefix}3"
  export ONEID_PEPPER="$name-bench-pepper-0123456789"
  # Plaintext, like the etcd it is compared with; the load generator's mixed
  # workload needs both the carrier and the query role.
  export ONEID_INSECURE=true
  for i in 1 2 3; do
    "$ONEID" serve --node-id "$i" --addr "127.0.0.1:${prefix}$i" --data-dir "$WORK/n$i" \
      --initial-cluster "$oc" 2>"$WORK/n$i.log" &
    PID[$i]=$!
  done
  # Ready when every node names the same leader (a follower that does not
  # know it yet would refuse the first writes).
  for _ in $(seq 100); do
    leaders=$(for i in 1 2 3; do
      "$ONEID" status --json --endpoints "127.0.0.1:${prefix}$i" 2>/dev/null \
        | sed -E 's/.*"leader_id":([0-9]+).*/\1/' || true
    done)
    leader=$(sort -u <<<"$leaders")
    [ "$(wc -l <<<"$leaders")" = 3 ] && [ "$(wc -l <<<"$leader")" = 1 ] && [ "$leader" != 0 ] && return 0
    sleep 0.2
  done
  echo "no leader elected; logs in $WORK" >&2
  return 1
}
