#!/usr/bin/env bash
# What this machine itself costs for a data set, whatever the backup tool: the floors
# under compare.sh's ratios.
#
# Usage:  tests/bench/floor.sh DIR [THREADS]     (as root, to drop the caches)
#
# - restore floor: the tree written back from uncompressed tar archives held in RAM
#   (/dev/shm) by THREADS (default 8) `tar -x` at once, each taking every THREADS-th
#   entry, into directories made beforehand (untimed): creating the files and symlinks
#   and writing their bytes into the page cache, with no
#   decompression, no decryption, no hashing. A restore tool cannot be faster than
#   this on the same disk; one that is N times faster than another needs that other
#   to take at least N times this.
# - compression floor: `zstd -3 -T2` over the same archives, held in RAM: zstd level 3
#   alone on two threads (Coffer's level; restic's "auto" mode is of the same class),
#   no reading of the tree, chunking, hashing, encryption or writes.
#
# Each takes the best of FLOOR_RUNS runs (3). Prints one line each, and the page-cache write
# speed (dd of 1 GiB into a fresh file) that the restore floor mostly is.
set -euo pipefail
src=${1:?usage: floor.sh DIR [THREADS]}
threads=${2:-8}
runs=${FLOOR_RUNS:-3}
src=$(cd "$src" && pwd -P)
work=${FLOOR_DIR:-/tmp/coffer-floor}
shm=/dev/shm/coffer-floor
[[ $work != / && $shm != / ]]
rm -rf "$work" "$shm"
mkdir -p "$work" "$shm"
trap 'rm -rf "$work" "$shm"' EXIT

settle() { sync; if [[ -w /proc/sys/vm/drop_caches ]]; then echo 3 >/proc/sys/vm/drop_caches; fi; }
best() { sort -n | head -n1; }
now() { date +%s.%N; }

# Every entry but directories (tar makes the parents), dealt round-robin into parts.
(cd "$src" && find . -mindepth 1 ! -type d -print0) >"$work/all"
for ((k = 0; k < threads; k++)); do
  tr '\0' '\n' <"$work/all" | awk -v n="$threads" -v k="$k" '(NR - 1) % n == k' >"$work/list.$k"
  tar -C "$src" --no-recursion --hard-dereference -cf "$shm/part.$k.tar" -T "$work/list.$k"
done
entries=$(tr -cd '\0' <"$work/all" | wc -c)
bytes=$(du -sb "$shm" | awk '{print $1}')

restore_times=()
for ((run = 0; run < runs; run++)); do
  rm -rf "$work/out"
  mkdir -p "$work/out"
  # The directories first, untimed (parallel tars race to make shared parents): the
  # floor leaves their creation out, so it is a little lower than what a restore needs.
  (cd "$src" && find . -mindepth 1 -type d -print0) | (cd "$work/out" && xargs -0 -r mkdir -p)
  settle
  cat "$shm"/part.*.tar >/dev/null
  t0=$(now)
  pids=()
  for ((k = 0; k < threads; k++)); do
    tar -C "$work/out" -xf "$shm/part.$k.tar" &
    pids+=("$!")
  done
  for pid in "${pids[@]}"; do wait "$pid" || { echo "floor.sh: a tar -x failed" >&2; exit 1; }; done
  t1=$(now)
  restore_times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
done
rm -rf "$work/out"

compress_times=()
for ((run = 0; run < runs; run++)); do
  settle
  cat "$shm"/part.*.tar >/dev/null
  t0=$(now)
  zstd -q -3 -T2 -c "$shm"/part.*.tar >/dev/null
  t1=$(now)
  compress_times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
done
rm -f "$shm"/part.*.tar

dd_times=()
for ((run = 0; run < runs; run++)); do
  rm -f "$work/dd"
  settle
  t0=$(now)
  dd if=/dev/zero of="$work/dd" bs=1M count=1024 status=none
  t1=$(now)
  dd_times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
done

printf 'data:              %s: %s entries, %s MiB\n' "$src" "$entries" "$((bytes / 1048576))"
printf 'restore floor:     %.2f s  (%s tar -x at once from RAM, best of %s)\n' \
  "$(printf '%s\n' "${restore_times[@]}" | best)" "$threads" "$runs"
printf 'compression floor: %.2f s  (zstd -3 -T2 over the archives in RAM, best of %s)\n' \
  "$(printf '%s\n' "${compress_times[@]}" | best)" "$runs"
printf 'page-cache writes: %.0f MiB/s  (dd of 1 GiB into a new file, best of %s)\n' \
  "$(awk -v t="$(printf '%s\n' "${dd_times[@]}" | best)" 'BEGIN { print 1024 / t }')" "$runs"
