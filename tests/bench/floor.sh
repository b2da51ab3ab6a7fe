#!/usr/bin/env bash
# What this machine itself costs for a data set, whatever the backup tool: the floor under
# compare.sh's backup ratios, and the page-cache write speed under its restores.
#
# Usage:  tests/bench/floor.sh DIR     (as root, to drop the caches between runs)
#
# - compression floor: `zstd -3 -T2` over the tree as one uncompressed tar archive held
#   in RAM (/dev/shm): zstd level 3 alone on two threads (Coffer's level; restic's "auto"
#   mode is of the same class), with no reading of the tree, chunking, hashing,
#   encryption or writes. A backup at that level cannot take less on a 2-core machine;
#   "N times faster than restic" needs restic's backup to take at least N times this.
#   The archive's size at levels 1, 2 and 3 is printed too (what a lower level would
#   cost in repository size).
# - page-cache writes: `dd` of 1 GiB into a new file on the disk under FLOOR_DIR.
# - tmpfs extraction: the tree unpacked onto a tmpfs from archives in RAM, its
#   directories by one `tar -x`, then its files by two at once (each from an archive of
#   every other file): creating the entries and copying the bytes into new tmpfs pages,
#   with nothing to decompress, check or decrypt. A tmpfs's files are page-cache pages,
#   so this is where the cost of new pages shows. GNU tar makes more system calls per
#   file than a restore needs, so on trees of many small files this overstates the floor.
# - restore floor: decompressing the level-3 archive (`zstd -d`, one core), its SHA-256
#   (`openssl dgst`, one core) and writing its size into the page cache (at the `dd`
#   speed), summed and halved for two cores: what a restore of the tree must compute and
#   copy before it creates a single file, decrypts or reads a repository. "N times faster
#   than restic" needs restic's restore to take at least N times this.
# - tmpfs restore floor: the same with the tmpfs extraction (both cores' worth of it) in
#   place of the page-cache write: what a restore onto a tmpfs must compute and copy.
#
# Each time is the best of FLOOR_RUNS runs (default 3).
set -euo pipefail
src=${1:?usage: floor.sh DIR}
runs=${FLOOR_RUNS:-3}
src=$(cd "$src" && pwd -P)
work=${FLOOR_DIR:-/tmp/coffer-floor}
shm=/dev/shm/coffer-floor
rm -rf "$work" "$shm"
mkdir -p "$work" "$shm"
trap 'rm -rf "$work" "$shm"' EXIT

settle() { sync; if [[ -w /proc/sys/vm/drop_caches ]]; then echo 3 >/proc/sys/vm/drop_caches; fi; }
best() { sort -n | head -n1; }
now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }

tar -C "$src" -cf "$shm/tree.tar" .
mib=$(($(stat -c %s "$shm/tree.tar") / 1048576))

compress_times=()
for ((run = 0; run < runs; run++)); do
  settle
  cat "$shm/tree.tar" >/dev/null
  t0=$(now)
  zstd -q -3 -T2 -c "$shm/tree.tar" >/dev/null
  t1=$(now)
  compress_times+=("$(seconds "$t0" "$t1")")
done
sizes=()
for level in 1 2; do
  sizes+=("level $level $(($(zstd -q -"$level" -T2 -c "$shm/tree.tar" | wc -c) / 1048576)) MiB")
done
# Level 3 is kept: what a restore cannot avoid computing is decompressing it (one
# stream, one core) and the SHA-256 of every byte (the check of each chunk's id;
# openssl uses SHA-NI).
zstd -q -3 -T2 -c "$shm/tree.tar" >"$shm/tree.tar.zst"
sizes+=("level 3 $(($(stat -c %s "$shm/tree.tar.zst") / 1048576)) MiB")
decode_times=()
hash_times=()
for ((run = 0; run < runs; run++)); do
  t0=$(now)
  zstd -q -d -c "$shm/tree.tar.zst" >/dev/null
  t1=$(now)
  openssl dgst -sha256 "$shm/tree.tar" >/dev/null
  t2=$(now)
  decode_times+=("$(seconds "$t0" "$t1")")
  hash_times+=("$(seconds "$t1" "$t2")")
done
rm -f "$shm/tree.tar" "$shm/tree.tar.zst"

# The directories first (one archive), then two archives of every other file or symlink.
# Names are NUL-separated: a file name may hold a newline.
(cd "$src" && find . -mindepth 1 -type d -print0 | sort -z >"$shm/dirs")
(cd "$src" && find . ! -type d -print0 | sort -z >"$shm/all")
sed -z -n '1~2p' "$shm/all" >"$shm/odd"
sed -z -n '2~2p' "$shm/all" >"$shm/even"
for part in dirs odd even; do
  tar -C "$src" --no-recursion --null -cf "$shm/$part.tar" -T "$shm/$part"
done
untar_times=()
for ((run = 0; run < runs; run++)); do
  rm -rf "$shm/x"
  mkdir "$shm/x"
  settle
  t0=$(now)
  tar -C "$shm/x" -xf "$shm/dirs.tar"
  tar -C "$shm/x" -xf "$shm/odd.tar" &
  odd=$!
  tar -C "$shm/x" -xf "$shm/even.tar"
  wait "$odd"
  t1=$(now)
  untar_times+=("$(seconds "$t0" "$t1")")
done
rm -rf "$shm/x" "$shm"/{dirs,odd,even}.tar

dd_times=()
for ((run = 0; run < runs; run++)); do
  rm -f "$work/dd"
  settle
  t0=$(now)
  dd if=/dev/zero of="$work/dd" bs=1M count=1024 status=none
  t1=$(now)
  dd_times+=("$(seconds "$t0" "$t1")")
done

printf 'data:              %s: %s MiB as one tar archive\n' "$src" "$mib"
printf 'compression floor: %.2f s  (zstd -3 -T2 over the archive in RAM, best of %s)\n' \
  "$(printf '%s\n' "${compress_times[@]}" | best)" "$runs"
printf 'compressed size:   %s\n' "$(IFS=,; echo "${sizes[*]}" | sed 's/,/, /g')"
dd=$(printf '%s\n' "${dd_times[@]}" | best)
printf 'page-cache writes: %.0f MiB/s  (dd of 1 GiB into a new file, best of %s)\n' \
  "$(awk -v t="$dd" 'BEGIN { print 1024 / t }')" "$runs"
decode=$(printf '%s\n' "${decode_times[@]}" | best)
hash=$(printf '%s\n' "${hash_times[@]}" | best)
write=$(awk -v t="$dd" -v m="$mib" 'BEGIN { print m * t / 1024 }')
printf 'restore floor:     %.2f s  (on two cores: zstd -d of the level-3 archive %.2f s + its SHA-256 %.2f s + writing it into the page cache %.2f s, each one core; no file created, nothing decrypted or read from a repository)\n' \
  "$(awk -v a="$decode" -v b="$hash" -v c="$write" 'BEGIN { print (a + b + c) / 2 }')" "$decode" "$hash" "$write"
untar=$(printf '%s\n' "${untar_times[@]}" | best)
printf 'tmpfs extraction:  %.2f s  (the tree onto a tmpfs by tar -x from archives in RAM, files by two at once, best of %s)\n' \
  "$untar" "$runs"
printf 'tmpfs restore floor: %.2f s  (on two cores: zstd -d %.2f s + SHA-256 %.2f s + the tmpfs extraction on both cores %.2f s x 2)\n' \
  "$(awk -v a="$decode" -v b="$hash" -v c="$untar" 'BEGIN { print (a + b + 2 * c) / 2 }')" "$decode" "$hash" "$untar"
