#!/usr/bin/env bash
# What one durable log write costs on this disk: PROCS processes at once
# (a 3-node cluster on one machine syncs three logs on one disk) each write
# COUNT blocks of 8 KiB, every write synced (O_DSYNC), first appending to a
# new file, then over a file written (and synced) beforehand. Prints the
# wall time and the CPU (user+system) per synced write for each process.
# Appending grows the file, so on ext4 every sync also commits the journal;
# overwriting written blocks does not (session 39 measured what that would
# buy a log: see benches/HISTORY.md).
#
#   benches/disk-sync.sh [PROCS] [COUNT]   (defaults 3 1500)
#   BENCH_DIR=DIR benches/disk-sync.sh     # the disk to measure (default /tmp)
set -euo pipefail
PROCS=${1:-3}
COUNT=${2:-1500}
WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/oneid-disk-sync.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# dd's user and system seconds, for `time`.
TIMEFORMAT="%U %S"

one() { # MODE FILE: COUNT synced writes into FILE; prints a line per MODE
  local mode=$1 f=$2 start end
  start=$(date +%s%N)
  { time dd if=/dev/zero of="$f" bs=8k count="$COUNT" oflag=dsync conv=notrunc status=none; } 2>"$f.cpu"
  end=$(date +%s%N)
  awk -v mode="$mode" -v wall="$(( (end - start) / 1000 ))" -v n="$COUNT" '
    { printf "%-9s wall_us_per_sync=%.1f cpu_us_per_sync=%.1f\n", mode, wall / n, ($1 + $2) * 1e6 / n }' "$f.cpu"
}

for mode in append overwrite; do
  for i in $(seq "$PROCS"); do
    rm -f "$WORK/$i"
    if [ "$mode" = overwrite ]; then
      dd if=/dev/zero of="$WORK/$i" bs=8k count="$COUNT" conv=fsync status=none
    fi
  done
  for i in $(seq "$PROCS"); do one "$mode" "$WORK/$i" & done
  wait
done
