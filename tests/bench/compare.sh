#!/usr/bin/env bash
# Coffer vs restic vs Borg: backup/restore benchmark on one data set.
#
# Usage:  tests/bench/compare.sh            (full run, ~1 GB data set)
#         BENCH_QUICK=1 tests/bench/compare.sh   (smoke run, /usr/share/doc)
#
# See tests/bench/README.md for the environment variables and what is measured.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

# ---------------------------------------------------------------- settings
BENCH_QUICK=${BENCH_QUICK:-0}
if [[ $BENCH_QUICK == 1 ]]; then
  BENCH_SRC=${BENCH_SRC:-/usr/share/doc}
  BENCH_LARGE_MB=${BENCH_LARGE_MB:-0}
else
  BENCH_SRC=${BENCH_SRC:-/usr/share}
  BENCH_LARGE_MB=${BENCH_LARGE_MB:-64}
fi
BENCH_DIR=${BENCH_DIR:-/tmp/coffer-bench}
BENCH_TOOLS=${BENCH_TOOLS:-coffer restic borg}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-3600}   # seconds per operation
BENCH_KEEP_RESTORE=${BENCH_KEEP_RESTORE:-0}
COFFER_DEFAULT_BIN="$REPO_ROOT/target/release/coffer"
COFFER_BIN=${COFFER_BIN:-$COFFER_DEFAULT_BIN}
COFFER_BUILD=${COFFER_BUILD:-auto}     # auto: build only if default binary missing; 1: always; 0: never
PASSWORD=bench-password

ALL_TOOLS=(coffer restic borg)
read -r -a TOOLS <<<"$BENCH_TOOLS"
for t in "${TOOLS[@]}"; do
  case $t in coffer | restic | borg) ;; *) echo "unknown tool in BENCH_TOOLS: $t" >&2; exit 2 ;; esac
done

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
has_tool() { local t; for t in "${TOOLS[@]}"; do [[ $t == "$1" ]] && return 0; done; return 1; }

# ---------------------------------------------------------------- prerequisites
install_missing() {
  local pkgs=()
  has_tool restic && ! command -v restic >/dev/null 2>&1 && pkgs+=(restic)
  has_tool borg && ! command -v borg >/dev/null 2>&1 && pkgs+=(borgbackup)
  [[ -x /usr/bin/time ]] || pkgs+=(time)
  if [[ $BENCH_LARGE_MB != 0 ]] && ! command -v openssl >/dev/null 2>&1; then pkgs+=(openssl); fi
  ((${#pkgs[@]} == 0)) && return 0
  log "installing missing packages: ${pkgs[*]}"
  local sudo=()
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "need root or sudo to install ${pkgs[*]}"
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${pkgs[@]}" >/dev/null
}
install_missing
for c in tar sha256sum find du awk timeout; do
  command -v "$c" >/dev/null 2>&1 || die "required command not found: $c"
done

[[ -d $BENCH_SRC ]] || die "BENCH_SRC=$BENCH_SRC is not a directory"
BENCH_SRC=$(cd "$BENCH_SRC" && pwd -P)
[[ -n $BENCH_DIR && $BENCH_DIR != / ]] || die "refusing BENCH_DIR=$BENCH_DIR"
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd -P)
[[ $BENCH_DIR != / ]] || die "refusing BENCH_DIR=/"
case "$BENCH_DIR/" in "$BENCH_SRC"/*) die "BENCH_DIR must not be inside BENCH_SRC" ;; esac
case "$BENCH_SRC/" in "$BENCH_DIR"/*) die "BENCH_SRC must not be inside BENCH_DIR" ;; esac

DATA=$BENCH_DIR/data
REPOS=$BENCH_DIR/repos
RESTORES=$BENCH_DIR/restore
LOGS=$BENCH_DIR/logs
HOMES=$BENCH_DIR/home
CDIR=$BENCH_DIR/coffer
# Only remove what this script creates, never the whole BENCH_DIR.
rm -rf "$DATA" "$REPOS" "$RESTORES" "$LOGS" "$HOMES" "$CDIR"
mkdir -p "$DATA" "$REPOS" "$RESTORES" "$LOGS" "$HOMES"

export RESTIC_PASSWORD=$PASSWORD
export RESTIC_CACHE_DIR=$HOMES/restic-cache
export RESTIC_PROGRESS_FPS=0.01
export BORG_PASSPHRASE=$PASSWORD
export BORG_BASE_DIR=$HOMES/borg
export BORG_DISPLAY_PASSPHRASE=no
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no

# ---------------------------------------------------------------- result store
declare -A R=()        # "tool|metric" -> value (numbers; or n/a / FAIL)
declare -A TOOL_OK=()  # tool -> 1 if still usable
declare -A TOOL_ERR=() # tool -> error text
declare -A VERSION=()
for t in "${TOOLS[@]}"; do TOOL_OK[$t]=1; done

add_err() { TOOL_ERR[$1]="${TOOL_ERR[$1]:+${TOOL_ERR[$1]}; }$2"; }
fail_tool() { # tool [message] : stop running this tool (run_op already recorded its own error)
  TOOL_OK[$1]=0
  [[ -z ${2:-} ]] || add_err "$1" "$2"
  log "$1 disabled: ${TOOL_ERR[$1]:-}"
}

# run_op TOOL OP WORKDIR CMD... : time CMD (elapsed, max RSS) into R[TOOL|OP_s], R[TOOL|OP_rss]
run_op() {
  local tool=$1 op=$2 wd=$3
  shift 3
  local out=$LOGS/$tool-$op.log tf=$LOGS/$tool-$op.time rc
  log "$tool: $op ..."
  printf '+ %s\n' "$*" >"$out"
  sync # flush dirty pages (and pending discards) left by earlier steps, outside the timed region
  if (cd "$wd" && /usr/bin/time -o "$tf" -f '%e %M' \
    timeout --kill-after=30 "$BENCH_TIMEOUT" "$@") >>"$out" 2>&1 </dev/null; then
    rc=0
  else
    rc=$?
  fi
  local ok=0
  case $tool:$rc in
    *:0) ok=1 ;;
    borg:1) ok=1; log "$tool: $op finished with warnings (rc=1), see $out" ;;          # borg: warning
    restic:3) ok=1; log "$tool: $op: some files could not be read (rc=3), see $out" ;; # restic: incomplete
  esac
  if ((ok)) && [[ -s $tf ]]; then
    local e m
    read -r e m < <(tail -n1 "$tf")
    R["$tool|${op}_s"]=$e
    R["$tool|${op}_rss"]=$m
    log "$tool: $op done in ${e}s, peak RSS $((m / 1024)) MiB"
    return 0
  fi
  R["$tool|${op}_s"]=FAIL
  R["$tool|${op}_rss"]=FAIL
  local msg
  msg="$op failed (rc=$rc): $(grep -v '^+ ' "$out" | tail -n 3 | tr '\n' ' ' | cut -c1-300)"
  add_err "$tool" "$msg"
  log "$tool: $msg  (log: $out)"
  return 1
}

du_b() { if [[ -e $1 ]]; then du -sb "$1" | awk '{print $1}'; else echo n/a; fi; }

# Read everything under a directory so every tool starts with a warm page cache.
# (GNU tar skips reading file data when the archive is literally /dev/null, hence the pipe.)
warm() { tar -C "$1" -cf - . 2>/dev/null | cat >/dev/null || true; }

loadavg() { cut -d' ' -f1 /proc/loadavg; }
LOAD_START=$(loadavg)

# ---------------------------------------------------------------- coffer binary
if has_tool coffer; then
  # Coffer reads COFFER_* variables and ./config/coffer.toml (its ops run with cwd=$BENCH_DIR).
  while IFS='=' read -r name _; do
    case $name in COFFER_BIN | COFFER_BUILD) ;; COFFER_*) log "WARNING: $name is set and changes Coffer's settings (e.g. encryption)" ;; esac
  done < <(env)
  want_build=0
  if [[ $COFFER_BUILD == 1 ]]; then
    want_build=1
  elif [[ $COFFER_BUILD == auto && ! -x $COFFER_BIN && $COFFER_BIN == "$COFFER_DEFAULT_BIN" ]]; then
    want_build=1
  fi
  if ((want_build)); then
    if command -v cargo >/dev/null 2>&1; then
      log "coffer: building release binary (cargo build --release -p coffer) in $REPO_ROOT ..."
      if ! (cd "$REPO_ROOT" && cargo build --release -p coffer) >"$LOGS/coffer-build.log" 2>&1; then
        log "coffer: cargo build failed, see $LOGS/coffer-build.log"
      fi
    else
      log "coffer: cargo not found, cannot build"
    fi
  fi
  if [[ ! -x $COFFER_BIN ]]; then
    reason="binary not found at $COFFER_BIN"
    [[ -s $LOGS/coffer-build.log ]] && reason+="; cargo build: $(grep -E '^error' "$LOGS/coffer-build.log" | head -n 2 | tr '\n' ' ' | cut -c1-200)"
    fail_tool coffer "$reason"
  else
    VERSION[coffer]=$("$COFFER_BIN" --version 2>/dev/null | head -n1 || true)
    VERSION[coffer]=${VERSION[coffer]:-"(--version unsupported)"}
  fi
fi
has_tool restic && VERSION[restic]=$(restic version 2>/dev/null | head -n1)
has_tool borg && VERSION[borg]=$(borg --version 2>/dev/null | head -n1)

# ---------------------------------------------------------------- data set
log "preparing data set: $BENCH_SRC -> $DATA/tree (+ large files: ${BENCH_LARGE_MB} MiB each)"
prep_start=$SECONDS
mkdir -p "$DATA/tree"
cp -a "$BENCH_SRC/." "$DATA/tree/"

det_stream() { # det_stream SEED BYTES : deterministic pseudo-random bytes
  head -c "$2" /dev/zero | openssl enc -aes-256-ctr -nosalt -pbkdf2 -pass "pass:coffer-bench-$1"
}
if [[ $BENCH_LARGE_MB != 0 ]]; then
  mkdir -p "$DATA/large"
  n=$((BENCH_LARGE_MB * 1024 * 1024))
  det_stream random "$n" >"$DATA/large/random.bin"
  # Compressible log-like text (deterministic: fixed awk seed).
  awk -v limit="$n" 'BEGIN {
    srand(42)
    split("INFO INFO INFO WARN DEBUG ERROR", lvl, " ")
    split("GET POST PUT DELETE", verb, " ")
    split("/api/v1/backups /api/v1/snapshots /api/v1/users /login /health /api/v1/repos", path, " ")
    total = 0; i = 0
    while (total < limit) {
      line = sprintf("2024-05-%02d %02d:%02d:%02d.%03d %-5s worker-%d %s %s id=%d status=%d bytes=%d\n",
        1 + int(i / 86400000) % 28, int(i / 3600000) % 24, int(i / 60000) % 60, int(i / 1000) % 60, i % 1000,
        lvl[1 + int(rand() * 6)], int(rand() * 8), verb[1 + int(rand() * 4)], path[1 + int(rand() * 6)],
        int(rand() * 1000000), (rand() < 0.9 ? 200 : 500), int(rand() * 65536))
      if (total + length(line) > limit) line = substr(line, 1, limit - total)
      printf "%s", line
      total += length(line); i += 137
    }
  }' >"$DATA/large/text.log"
  # Sparse-ish: mostly zeros (a real sparse file) with a few random 64 KiB islands.
  truncate -s "$n" "$DATA/large/sparse.img"
  det_stream sparse $((64 * 1024 * 8)) >"$LOGS/islands.bin"
  for k in 0 1 2 3 4 5 6 7; do
    dd if="$LOGS/islands.bin" of="$DATA/large/sparse.img" bs=65536 skip="$k" count=1 \
      seek=$(((n / 65536) * k / 8)) conv=notrunc status=none
  done
  rm -f "$LOGS/islands.bin"
fi
DATA_FILES=$(find "$DATA" -type f | wc -l)
DATA_ENTRIES=$(find "$DATA" -mindepth 1 | wc -l)
DATA_BYTES=$(du -sb "$DATA" | awk '{print $1}')
log "data set ready in $((SECONDS - prep_start))s: $DATA_FILES files, $DATA_ENTRIES entries, $DATA_BYTES bytes (apparent)"

# ---------------------------------------------------------------- backup commands
tool_init() {
  case $1 in
    coffer) return 0 ;; # coffer creates repository + key on first backup (included in backup1)
    restic) run_op restic init "$BENCH_DIR" restic init -r "$REPOS/restic" ;;
    borg) run_op borg init "$BENCH_DIR" borg init -e repokey "$REPOS/borg" ;;
  esac
}
tool_backup() { # tool n
  case $1 in
    coffer) run_op coffer "backup$2" "$BENCH_DIR" env RUST_LOG=warn "$COFFER_BIN" --data-dir "$CDIR" backup "$DATA" ;;
    restic) run_op restic "backup$2" "$BENCH_DIR" restic backup -r "$REPOS/restic" "$DATA" ;;
    borg) run_op borg "backup$2" "$BENCH_DIR" borg create "$REPOS/borg::snap$2" "$DATA" ;;
  esac
}
repo_path() {
  case $1 in
    coffer) echo "$CDIR/repository" ;;
    restic) echo "$REPOS/restic" ;;
    borg) echo "$REPOS/borg" ;;
  esac
}
local_state_bytes() { # client-side cache/state outside the repository
  local total repo
  case $1 in
    coffer)
      total=$(du_b "$CDIR"); repo=$(du_b "$CDIR/repository")
      if [[ $total == n/a || $repo == n/a ]]; then echo n/a; else echo $((total - repo)); fi ;;
    restic) du_b "$RESTIC_CACHE_DIR" ;;
    borg) du_b "$BORG_BASE_DIR" ;;
  esac
}
# tool_restore tool target ; sets RESTORED_ROOT (where DATA's contents end up)
tool_restore() {
  local t=$1 target=$2
  case $t in
    coffer)
      RESTORED_ROOT=$target
      run_op coffer restore "$BENCH_DIR" env RUST_LOG=warn "$COFFER_BIN" --data-dir "$CDIR" restore latest "$target" ;;
    restic)
      RESTORED_ROOT=$target$DATA # restic recreates the absolute path under --target
      mkdir -p "$target"
      run_op restic restore "$BENCH_DIR" restic restore latest -r "$REPOS/restic" --target "$target" ;;
    borg)
      RESTORED_ROOT=$target/${DATA#/} # borg extracts into cwd, path without leading slash
      mkdir -p "$target"
      run_op borg restore "$target" borg extract "$REPOS/borg::snap3" ;;
  esac
}

# ---------------------------------------------------------------- phase 1: full + unchanged backups
for t in "${TOOLS[@]}"; do
  [[ ${TOOL_OK[$t]} == 1 ]] || continue
  if ! tool_init "$t"; then fail_tool "$t"; continue; fi
  warm "$DATA"
  if ! tool_backup "$t" 1; then fail_tool "$t"; continue; fi
  R[$t|size1]=$(du_b "$(repo_path "$t")")
  warm "$DATA"
  tool_backup "$t" 2 || true
done

# ---------------------------------------------------------------- phase 2: change ~1% of the files
log "modifying ~1% of the files (every 100th regular file in sorted order)"
mapfile -d '' FILES < <(cd "$DATA" && find . -type f -print0 | LC_ALL=C sort -z)
MODIFIED=0
for ((i = 50; i < ${#FILES[@]}; i += 100)); do
  f=$DATA/${FILES[i]#./}
  size=$(stat -c %s "$f")
  if ((MODIFIED % 2 == 0 || size < 64)); then
    printf '\n# coffer-bench modification %d\n' "$MODIFIED" >>"$f"
  else # overwrite 16 bytes in the middle, size unchanged
    printf 'CofferBench%05d' "$MODIFIED" | dd of="$f" bs=1 seek=$((size / 2)) conv=notrunc status=none
  fi
  MODIFIED=$((MODIFIED + 1))
done
if [[ -f $DATA/large/random.bin ]]; then # also a small in-place change inside a big file
  det_stream change 4096 | dd of="$DATA/large/random.bin" bs=4096 seek=$((BENCH_LARGE_MB * 256 / 2)) conv=notrunc status=none
fi
log "modified $MODIFIED of ${#FILES[@]} files"

# ---------------------------------------------------------------- phase 3: incremental backup
for t in "${TOOLS[@]}"; do
  [[ ${TOOL_OK[$t]} == 1 ]] || continue
  warm "$DATA"
  tool_backup "$t" 3 || true
  R[$t|size3]=$(du_b "$(repo_path "$t")")
  R[$t|state]=$(local_state_bytes "$t")
done

# ---------------------------------------------------------------- phase 4: restore + verify
content_manifest() { # dir -> stdout: type/path/symlink target + sha256 of regular files
  (
    cd "$1"
    find . -mindepth 1 \( -type l -printf 'l %P -> %l\n' \) -o \( -type f -printf 'f %P\n' \) -o -printf '%y %P\n' | LC_ALL=C sort
    find . -type f -print0 | xargs -0 -r -n 200 -P 2 sha256sum | LC_ALL=C sort -k 2
  )
}
meta_manifest() { # dir -> stdout: type, mode, mtime (whole seconds) of everything but symlinks
  (cd "$1" && find . -mindepth 1 ! -type l -printf '%y %m %T@ %P\n' |
    awk '{ split($3, a, "."); $3 = a[1]; print }' | LC_ALL=C sort)
}
if ((${#TOOLS[@]} > 0)); then
  log "computing source manifests"
  content_manifest "$DATA" >"$LOGS/source.content"
  meta_manifest "$DATA" >"$LOGS/source.meta"
fi
MISMATCH=0
for t in "${TOOLS[@]}"; do
  [[ ${TOOL_OK[$t]} == 1 ]] || continue
  target=$RESTORES/$t
  rm -rf "$target"
  warm "$(repo_path "$t")"
  if ! tool_restore "$t" "$target"; then
    R[$t|verify]=FAIL
    R[$t|verify_meta]=FAIL
    continue
  fi
  if [[ ! -d $RESTORED_ROOT ]]; then
    R[$t|verify]=MISSING
    R[$t|verify_meta]=MISSING
    MISMATCH=1
    log "!!!!!! $t: restored tree not found at $RESTORED_ROOT !!!!!!"
    continue
  fi
  log "$t: verifying restored tree $RESTORED_ROOT"
  content_manifest "$RESTORED_ROOT" >"$LOGS/$t.content"
  meta_manifest "$RESTORED_ROOT" >"$LOGS/$t.meta"
  if cmp -s "$LOGS/source.content" "$LOGS/$t.content"; then
    R[$t|verify]=OK
  else
    R[$t|verify]=MISMATCH
    MISMATCH=1
    diff "$LOGS/source.content" "$LOGS/$t.content" >"$LOGS/$t.content.diff" || true
    log "!!!!!! $t: RESTORED CONTENT DIFFERS FROM SOURCE ($(grep -c '^[<>]' "$LOGS/$t.content.diff") diff lines, $LOGS/$t.content.diff) !!!!!!"
    head -n 10 "$LOGS/$t.content.diff" >&2
  fi
  if cmp -s "$LOGS/source.meta" "$LOGS/$t.meta"; then
    R[$t|verify_meta]=OK
  else
    diff "$LOGS/source.meta" "$LOGS/$t.meta" >"$LOGS/$t.meta.diff" || true
    R[$t|verify_meta]="DIFF($(grep -c '^>' "$LOGS/$t.meta.diff"))"
    log "$t: mode/mtime differences after restore: $LOGS/$t.meta.diff"
  fi
  if [[ $BENCH_KEEP_RESTORE != 1 ]]; then
    # Not timed. Can take minutes for a full run on ext4 mounted with -o discard.
    log "$t: removing restored tree"
    rm -rf "$target"
  fi
done

# ---------------------------------------------------------------- report
isnum() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
cell() { # tool metric kind -> formatted cell
  local t=$1 m=$2 kind=$3 v
  if ! has_tool "$t"; then echo "-"; return; fi
  v=${R[$t|$m]:-}
  if [[ -z $v ]]; then echo "n/a"; return; fi
  if ! isnum "$v"; then echo "$v"; return; fi
  case $kind in
    s) printf '%.2f' "$v" ;;
    kib) awk -v x="$v" 'BEGIN { printf "%.1f", x / 1024 }' ;;
    b) awk -v x="$v" 'BEGIN { printf "%.1f", x / 1048576 }' ;;
    *) echo "$v" ;;
  esac
}
ratio() { # tool metric : tool/coffer
  local a=${R[$1|$2]:-} c=${R[coffer|$2]:-}
  if isnum "$a" && isnum "$c" && awk -v c="$c" 'BEGIN { exit !(c > 0) }'; then
    awk -v a="$a" -v c="$c" 'BEGIN { printf "%.2f", a / c }'
  else
    echo "-"
  fi
}
# per-tool max RSS over all operations
for t in "${TOOLS[@]}"; do
  mx=""
  for op in init backup1 backup2 backup3 restore; do
    v=${R[$t|${op}_rss]:-}
    isnum "$v" || continue
    if [[ -z $mx ]] || ((v > mx)); then mx=$v; fi
  done
  [[ -n $mx ]] && R[$t|max_rss]=$mx
done

ROWS=(
  "repo init time (s)|init_s|s"
  "backup 1: full time (s)|backup1_s|s"
  "backup 2: unchanged time (s)|backup2_s|s"
  "backup 3: ~1% changed time (s)|backup3_s|s"
  "restore latest time (s)|restore_s|s"
  "peak RSS backup 1 (MiB)|backup1_rss|kib"
  "peak RSS backup 2 (MiB)|backup2_rss|kib"
  "peak RSS backup 3 (MiB)|backup3_rss|kib"
  "peak RSS restore (MiB)|restore_rss|kib"
  "peak RSS max over ops (MiB)|max_rss|kib"
  "repo size after backup 1 (MiB)|size1|b"
  "repo size after backup 3 (MiB)|size3|b"
  "local cache/state (MiB)|state|b"
  "restore content == source|verify|"
  "restore mode+mtime == source|verify_meta|"
)
LOAD_END=$(loadavg)
{
  echo
  echo "=== Coffer vs restic vs Borg ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -r)) ==="
  printf 'data set: %s' "$BENCH_SRC"
  [[ $BENCH_LARGE_MB != 0 ]] && printf ' + 3 x %s MiB (random, text, sparse)' "$BENCH_LARGE_MB"
  printf '\n          %s files, %s entries, %.1f MiB; backup 3 after modifying %s files\n' \
    "$DATA_FILES" "$DATA_ENTRIES" "$(awk -v x="$DATA_BYTES" 'BEGIN { print x / 1048576 }')" "$MODIFIED"
  for t in "${ALL_TOOLS[@]}"; do
    has_tool "$t" && printf 'version:  %-7s %s\n' "$t" "${VERSION[$t]:-n/a}"
  done
  printf 'load avg: %s at start, %s at end' "$LOAD_START" "$LOAD_END"
  if awk -v a="$LOAD_START" -v b="$LOAD_END" -v n="$(nproc)" 'BEGIN { exit !(a > n / 2 || b > n / 2) }'; then
    printf '  (WARNING: machine was busy, timings are noisy)'
  fi
  printf '\n'
  echo
  fmt='%-34s %11s %11s %11s %15s %13s\n'
  # shellcheck disable=SC2059
  printf "$fmt" metric coffer restic borg restic/coffer borg/coffer
  # shellcheck disable=SC2059
  printf "$fmt" "----------------------------------" ----------- ----------- ----------- --------------- -------------
  for row in "${ROWS[@]}"; do
    IFS='|' read -r label key kind <<<"$row"
    c=$(cell coffer "$key" "$kind")
    if [[ $key == init_s ]] && has_tool coffer && [[ ${TOOL_OK[coffer]} == 1 ]]; then c="(in bk 1)"; fi
    if [[ -z $kind ]]; then rr="" rb=""; else rr=$(ratio restic "$key") rb=$(ratio borg "$key"); fi
    # shellcheck disable=SC2059
    printf "$fmt" "$label" "$c" "$(cell restic "$key" "$kind")" "$(cell borg "$key" "$kind")" "$rr" "$rb"
  done
  echo
  echo "ratios: other/coffer; every metric is lower-is-better, so a ratio > 1 means coffer is better."
  for t in "${TOOLS[@]}"; do
    [[ -n ${TOOL_ERR[$t]:-} ]] && echo "$t: ERROR: ${TOOL_ERR[$t]}"
  done
  ((MISMATCH)) && echo "!!! RESTORE CONTENT MISMATCH — see $LOGS/*.content.diff !!!"
  echo "logs: $LOGS"
} | tee "$BENCH_DIR/results.txt"

{
  printf 'metric'; for t in "${ALL_TOOLS[@]}"; do printf '\t%s' "$t"; done; printf '\n'
  for row in "${ROWS[@]}"; do
    IFS='|' read -r label key kind <<<"$row"
    printf '%s' "$key"; for t in "${ALL_TOOLS[@]}"; do printf '\t%s' "${R[$t|$key]:-n/a}"; done; printf '\n'
  done
} >"$BENCH_DIR/results.tsv"

exit $((MISMATCH ? 3 : 0))
