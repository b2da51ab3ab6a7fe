#!/usr/bin/env bash
# Coffer vs restic vs Borg: backup/restore benchmark, side by side, on one or more data sets.
#
# Usage:  tests/bench/compare.sh                 (full run: /usr/share copy and /usr/lib copy)
#         BENCH_SETS=share tests/bench/compare.sh (one data set)
#         BENCH_QUICK=1 tests/bench/compare.sh   (smoke run, /usr/share/doc)
#         BENCH_S3=1 BENCH_SETS=share tests/bench/compare.sh (Coffer and restic both
#             writing to the S3 store of COFFER_TEST_S3_*, or to a three-node Garage
#             cluster started by .ci/garage under BENCH_DIR and stopped at the end;
#             Borg has no S3 backend)
#
# See tests/bench/README.md for the environment variables and what is measured.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

# ---------------------------------------------------------------- settings
BENCH_QUICK=${BENCH_QUICK:-0}
if [[ $BENCH_QUICK == 1 ]]; then
  BENCH_SETS=${BENCH_SETS:-doc}
else
  BENCH_SETS=${BENCH_SETS:-share big}
fi
BENCH_SHARE_SRC=${BENCH_SHARE_SRC:-/usr/share}
BENCH_BIG_SRC=${BENCH_BIG_SRC:-/usr/lib}
BENCH_DOC_SRC=${BENCH_DOC_SRC:-/usr/share/doc}
BENCH_LARGE_MB=${BENCH_LARGE_MB:-64}     # the share set's three large files, MiB each; 0 = none
BENCH_DIR=${BENCH_DIR:-/tmp/coffer-bench}
BENCH_TMPFS=${BENCH_TMPFS-/dev/shm/coffer-bench} # restore targets on tmpfs too; empty = skip
BENCH_S3=${BENCH_S3:-0}
if [[ $BENCH_S3 == 1 ]]; then
  BENCH_TOOLS=${BENCH_TOOLS:-coffer restic}
else
  BENCH_TOOLS=${BENCH_TOOLS:-coffer restic borg}
fi
BENCH_TIMEOUT=${BENCH_TIMEOUT:-3600}     # seconds per operation
BENCH_KEEP_RESTORE=${BENCH_KEEP_RESTORE:-0}
BENCH_DROP_CACHES=${BENCH_DROP_CACHES:-auto} # auto: when root
COFFER_DEFAULT_BIN="$REPO_ROOT/target/release/coffer"
COFFER_BIN=${COFFER_BIN:-$COFFER_DEFAULT_BIN}
COFFER_BUILD=${COFFER_BUILD:-auto}     # auto: build only if default binary missing; 1: always; 0: never
PASSWORD=bench-password

ALL_TOOLS=(coffer restic borg)
read -r -a TOOLS <<<"$BENCH_TOOLS"
for t in "${TOOLS[@]}"; do
  case $t in coffer | restic | borg) ;; *) echo "unknown tool in BENCH_TOOLS: $t" >&2; exit 2 ;; esac
done
read -r -a SETS <<<"$BENCH_SETS"
for s in "${SETS[@]}"; do
  case $s in share | big | doc) ;; *) echo "unknown data set in BENCH_SETS: $s (share, big, doc)" >&2; exit 2 ;; esac
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

if [[ $BENCH_DROP_CACHES == auto ]]; then
  if [[ $(id -u) == 0 && -w /proc/sys/vm/drop_caches ]]; then BENCH_DROP_CACHES=1; else BENCH_DROP_CACHES=0; fi
fi

[[ -n $BENCH_DIR && $BENCH_DIR != / ]] || die "refusing BENCH_DIR=$BENCH_DIR"
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd -P)
[[ $BENCH_DIR != / ]] || die "refusing BENCH_DIR=/"
for src in "$BENCH_SHARE_SRC" "$BENCH_BIG_SRC" "$BENCH_DOC_SRC"; do
  [[ -d $src ]] || continue
  src=$(cd "$src" && pwd -P)
  case "$BENCH_DIR/" in "$src"/*) die "BENCH_DIR must not be inside $src" ;; esac
  case "$src/" in "$BENCH_DIR"/*) die "$src must not be inside BENCH_DIR" ;; esac
done
if [[ -n $BENCH_TMPFS ]]; then
  mkdir -p "$BENCH_TMPFS"
  BENCH_TMPFS=$(cd "$BENCH_TMPFS" && pwd -P)
  if [[ $(stat -f -c %T "$BENCH_TMPFS") != tmpfs ]]; then
    log "WARNING: BENCH_TMPFS=$BENCH_TMPFS is not on a tmpfs; skipping the tmpfs restores"
    BENCH_TMPFS=
  fi
fi

DATA=$BENCH_DIR/data
REPOS=$BENCH_DIR/repos
RESTORES=$BENCH_DIR/restore
LOGS=$BENCH_DIR/logs
HOMES=$BENCH_DIR/home
CDIR=$BENCH_DIR/coffer
# ext4 without a journal (as on this project's VMs) skips every inode freed in the last
# minutes, one by one, whenever it allocates one (fs/ext4/ialloc.c, recently_deleted: 60 s,
# plus 300 s while the inode's table block is dirty, which allocating a neighbour makes
# it). Whichever tool restored onto the disk first after a large deletion paid for it:
# perf put ~30% of a Coffer restore's CPU time in that scan, and the same two binaries
# measured 1.49x or 2.17x by which one went first. So the disk restores wait until the
# script's last large deletion on the disk is BENCH_DELETE_QUIET seconds old (0: never).
BENCH_DELETE_QUIET=${BENCH_DELETE_QUIET:-360}
DELETED_AT=$BENCH_DIR/.deleted-at
disk_rm() { # paths... : rm -rf, remembering when something was deleted
  local found
  found=$(find "$@" -mindepth 1 -maxdepth 1 -print -quit 2>/dev/null || true)
  rm -rf "$@"
  [[ -z $found ]] || date +%s >"$DELETED_AT"
}
quiet_after_deletes() {
  [[ $BENCH_DELETE_QUIET -gt 0 && -f $DELETED_AT ]] || return 0
  local wait=$(($(cat "$DELETED_AT") + BENCH_DELETE_QUIET - $(date +%s)))
  if ((wait > 0)); then
    log "waiting ${wait}s before the disk restores: ext4 is still skipping the inodes freed by this script's last deletion (BENCH_DELETE_QUIET)"
    sleep "$wait"
  fi
}
# Only remove what this script creates, never the whole BENCH_DIR. (Logs and homes are a
# few files, not a deletion to wait for.)
disk_rm "$DATA" "$REPOS" "$RESTORES" "$CDIR"
rm -rf "$LOGS" "$HOMES"
[[ -n $BENCH_TMPFS ]] && rm -rf "${BENCH_TMPFS:?}"/*
mkdir -p "$DATA" "$REPOS" "$RESTORES" "$LOGS" "$HOMES"

# S3: both tools write to the same bucket, each under a prefix of its own for this run.
if [[ $BENCH_S3 == 1 ]]; then
  has_tool borg && die "Borg has no S3 backend: leave it out of BENCH_TOOLS with BENCH_S3=1"
  if [[ -z ${COFFER_TEST_S3_ENDPOINT:-} ]]; then
    log "starting a three-node Garage cluster (.ci/garage) in $BENCH_DIR/garage"
    "$REPO_ROOT/.ci/garage" start "$BENCH_DIR/garage" >/dev/null
    # Stopped however the script ends: a cluster left running holds the ports that
    # .ci/run's own cluster needs.
    trap '"$REPO_ROOT/.ci/garage" stop "$BENCH_DIR/garage" >/dev/null 2>&1 || true' EXIT
    # shellcheck disable=SC1091
    . "$BENCH_DIR/garage/env"
  fi
  S3_RUN=bench-$(date +%s)
  export AWS_ACCESS_KEY_ID=$COFFER_TEST_S3_ACCESS_KEY_ID
  export AWS_SECRET_ACCESS_KEY=$COFFER_TEST_S3_SECRET_ACCESS_KEY
  export AWS_DEFAULT_REGION=${COFFER_TEST_S3_REGION:-garage}
  # Coffer reads its secret from the environment too: never on a command line (visible
  # to every user in /proc) or in the logs, which print each command.
  export COFFER_STORAGE__SECRET_ACCESS_KEY=$COFFER_TEST_S3_SECRET_ACCESS_KEY
fi
COFFER_ENV=() # Coffer's storage settings for the current set (S3 mode)

export RESTIC_PASSWORD=$PASSWORD
export RESTIC_CACHE_DIR=$HOMES/restic-cache
export RESTIC_PROGRESS_FPS=0.01
export BORG_PASSPHRASE=$PASSWORD
export BORG_BASE_DIR=$HOMES/borg
export BORG_DISPLAY_PASSPHRASE=no
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no

# ---------------------------------------------------------------- result store
declare -A R=()        # "set|tool|metric" -> value (numbers; or n/a / FAIL)
declare -A TOOL_OK=()  # "set|tool" -> 1 if still usable for that set
declare -A TOOL_ERR=() # tool -> error text
declare -A VERSION=()
declare -A PHASES=()   # "set|op" -> coffer's phase timings
declare -A SET_INFO=() # set -> description
SET=""

add_err() { TOOL_ERR[$1]="${TOOL_ERR[$1]:+${TOOL_ERR[$1]}; }$2"; }
fail_tool() { # tool [message] : stop running this tool on this set
  TOOL_OK[$SET|$1]=0
  [[ -z ${2:-} ]] || add_err "$1" "$SET: $2"
  log "$1 disabled for $SET: ${TOOL_ERR[$1]:-}"
}
ok() { [[ ${TOOL_OK[$SET|$1]:-0} == 1 ]]; }

# Before every timed operation: write back what earlier steps left dirty, and (as root)
# drop the page, dentry and inode caches so every tool starts from the same state, then
# read the operation's input once so it starts warm. Dropping also forgets the inode
# table blocks that make ext4 skip recently deleted inodes one by one (that costs file
# creation most of its time right after a big tree was deleted, whoever restores next).
settle() { # warm-dir...
  sync
  if [[ $BENCH_DROP_CACHES == 1 ]]; then
    echo 3 >/proc/sys/vm/drop_caches
    # The programs themselves start warm too, as they would on a machine that runs them.
    if [[ $COFFER_READY == 1 ]]; then "$COFFER_BIN" --version >/dev/null 2>&1 || true; fi
    if has_tool restic; then restic version >/dev/null 2>&1 || true; fi
    if has_tool borg; then borg --version >/dev/null 2>&1 || true; fi
  fi
  local d
  for d in "$@"; do warm "$d"; done
}

# run_op TOOL OP WORKDIR CMD... : time CMD (elapsed, max RSS) into R[SET|TOOL|OP_s], R[...|OP_rss]
run_op() {
  local tool=$1 op=$2 wd=$3
  shift 3
  local out=$LOGS/$SET-$tool-$op.log tf=$LOGS/$SET-$tool-$op.time rc
  log "$SET: $tool: $op ..."
  printf '+ %s\n' "$*" >"$out"
  if (cd "$wd" && /usr/bin/time -o "$tf" -f '%e %M' \
    timeout --kill-after=30 "$BENCH_TIMEOUT" "$@") >>"$out" 2>&1 </dev/null; then
    rc=0
  else
    rc=$?
  fi
  local good=0
  case $tool:$rc in
    *:0) good=1 ;;
    borg:1) good=1; log "$tool: $op finished with warnings (rc=1), see $out" ;;          # borg: warning
    restic:3) good=1; log "$tool: $op: some files could not be read (rc=3), see $out" ;; # restic: incomplete
  esac
  if ((good)) && [[ -s $tf ]]; then
    local e m
    read -r e m < <(tail -n1 "$tf")
    R["$SET|$tool|${op}_s"]=$e
    R["$SET|$tool|${op}_rss"]=$m
    log "$SET: $tool: $op done in ${e}s, peak RSS $((m / 1024)) MiB"
    if [[ $tool == coffer ]] && grep -q '^timings: ' "$out"; then
      PHASES["$SET|$op"]=$(grep '^timings: ' "$out" | tail -n1 | sed 's/^timings: //')
    fi
    return 0
  fi
  R["$SET|$tool|${op}_s"]=FAIL
  R["$SET|$tool|${op}_rss"]=FAIL
  local msg
  msg="$op failed (rc=$rc): $(grep -v '^+ ' "$out" | tail -n 3 | tr '\n' ' ' | cut -c1-300)"
  add_err "$tool" "$SET: $msg"
  log "$tool: $msg  (log: $out)"
  return 1
}

du_b() { if [[ -e $1 ]]; then du -sb "$1" | awk '{print $1}'; else echo n/a; fi; }

# Read everything under a directory so it starts with a warm page cache.
# (GNU tar skips reading file data when the archive is literally /dev/null, hence the pipe.)
warm() { tar -C "$1" -cf - . 2>/dev/null | cat >/dev/null || true; }

loadavg() { cut -d' ' -f1 /proc/loadavg; }
LOAD_START=$(loadavg)
STARTED_AT=$(date -u '+%Y-%m-%d %H:%M UTC')

# ---------------------------------------------------------------- coffer binary
COFFER_READY=0
if has_tool coffer; then
  # Coffer reads COFFER_* variables and ./config/coffer.toml (its ops run with cwd=$BENCH_DIR).
  while IFS='=' read -r name _; do
    case $name in COFFER_BIN | COFFER_BUILD | COFFER_TEST_*) ;; COFFER_*) log "WARNING: $name is set and changes Coffer's settings (e.g. encryption)" ;; esac
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
    add_err coffer "$reason"
  else
    COFFER_READY=1
    VERSION[coffer]=$("$COFFER_BIN" --version 2>/dev/null | head -n1 || true)
    VERSION[coffer]=${VERSION[coffer]:-"(--version unsupported)"}
  fi
fi
has_tool restic && VERSION[restic]=$(restic version 2>/dev/null | head -n1)
has_tool borg && VERSION[borg]=$(borg --version 2>/dev/null | head -n1)

# ---------------------------------------------------------------- tool commands
det_stream() { # det_stream SEED BYTES : deterministic pseudo-random bytes
  head -c "$2" /dev/zero | openssl enc -aes-256-ctr -nosalt -pbkdf2 -pass "pass:coffer-bench-$1"
}
repo_path() {
  case $BENCH_S3:$1 in
    1:coffer) echo "s3:$COFFER_TEST_S3_BUCKET/$S3_RUN-$SET-coffer" ;;
    1:restic) echo "s3:$COFFER_TEST_S3_ENDPOINT/$COFFER_TEST_S3_BUCKET/$S3_RUN-$SET-restic" ;;
    *:coffer) echo "$CDIR/$SET/repository" ;;
    *:restic) echo "$REPOS/$SET-restic" ;;
    *:borg) echo "$REPOS/$SET-borg" ;;
  esac
}
tool_init() {
  case $1 in
    coffer) return 0 ;; # coffer creates repository + key on first backup (included in backup1)
    restic) run_op restic init "$BENCH_DIR" restic init -r "$(repo_path restic)" ;;
    borg) run_op borg init "$BENCH_DIR" borg init -e repokey "$(repo_path borg)" ;;
  esac
}
tool_backup() { # tool n
  local timings=()
  [[ $2 == 1 ]] && timings=(--timings)
  case $1 in
    coffer) run_op coffer "backup$2" "$BENCH_DIR" env RUST_LOG=warn "${COFFER_ENV[@]}" "$COFFER_BIN" --data-dir "$CDIR/$SET" backup "${timings[@]}" "$SET_DATA" ;;
    restic) run_op restic "backup$2" "$BENCH_DIR" restic backup -r "$(repo_path restic)" "$SET_DATA" ;;
    borg) run_op borg "backup$2" "$BENCH_DIR" borg create "$(repo_path borg)::snap$2" "$SET_DATA" ;;
  esac
}
local_state_bytes() { # client-side cache/state outside the repository
  local total repo
  case $1 in
    coffer)
      total=$(du_b "$CDIR/$SET"); repo=$(du_b "$CDIR/$SET/repository")
      if [[ $total == n/a || $repo == n/a ]]; then echo n/a; else echo $((total - repo)); fi ;;
    restic) du_b "$RESTIC_CACHE_DIR" ;;
    borg) du_b "$BORG_BASE_DIR" ;;
  esac
}
# tool_restore tool op target ; sets RESTORED_ROOT (where the data set's contents end up)
tool_restore() {
  local t=$1 op=$2 target=$3
  case $t in
    coffer)
      RESTORED_ROOT=$target
      run_op coffer "$op" "$BENCH_DIR" env RUST_LOG=warn "${COFFER_ENV[@]}" "$COFFER_BIN" --data-dir "$CDIR/$SET" restore --timings latest "$target" ;;
    restic)
      RESTORED_ROOT=$target$SET_DATA # restic recreates the absolute path under --target
      mkdir -p "$target"
      run_op restic "$op" "$BENCH_DIR" restic restore latest -r "$(repo_path restic)" --target "$target" ;;
    borg)
      RESTORED_ROOT=$target/${SET_DATA#/} # borg extracts into cwd, path without leading slash
      mkdir -p "$target"
      run_op borg "$op" "$target" borg extract "$(repo_path borg)::snap3" ;;
  esac
}
content_manifest() { # dir -> stdout: type/path/symlink target + sha256 of regular files
  (
    cd "$1"
    find . -mindepth 1 \( -type l -printf 'l %P -> %l\n' \) -o \( -type f -printf 'f %P\n' \) -o -printf '%y %P\n' | LC_ALL=C sort
    find . -type f -print0 | xargs -0 -r -n 200 -P 2 sha256sum | LC_ALL=C sort -k 2
  )
}
meta_manifest() { # dir -> stdout: type, mode, mtime (whole seconds) of everything, symlinks included
  (cd "$1" && find . -mindepth 1 -printf '%y %m %T@ %P\n' |
    awk '{ split($3, a, "."); $3 = a[1]; print }' | LC_ALL=C sort)
}
# verify tool key root : compares a restored tree with the source manifests
verify_tree() {
  local t=$1 key=$2 root=$3
  if [[ ! -d $root ]]; then
    R[$SET|$t|$key]=MISSING
    MISMATCH=1
    log "!!!!!! $SET: $t: restored tree not found at $root !!!!!!"
    return
  fi
  log "$SET: $t: verifying $root"
  content_manifest "$root" >"$LOGS/$SET-$t-$key.content"
  meta_manifest "$root" >"$LOGS/$SET-$t-$key.meta"
  if cmp -s "$LOGS/$SET-source.content" "$LOGS/$SET-$t-$key.content"; then
    R[$SET|$t|$key]=OK
  else
    R[$SET|$t|$key]=MISMATCH
    MISMATCH=1
    diff "$LOGS/$SET-source.content" "$LOGS/$SET-$t-$key.content" >"$LOGS/$SET-$t-$key.content.diff" || true
    log "!!!!!! $SET: $t: RESTORED CONTENT DIFFERS FROM SOURCE ($LOGS/$SET-$t-$key.content.diff) !!!!!!"
    head -n 10 "$LOGS/$SET-$t-$key.content.diff" >&2
  fi
  if cmp -s "$LOGS/$SET-source.meta" "$LOGS/$SET-$t-$key.meta"; then
    R[$SET|$t|${key}_meta]=OK
  else
    diff "$LOGS/$SET-source.meta" "$LOGS/$SET-$t-$key.meta" >"$LOGS/$SET-$t-$key.meta.diff" || true
    R[$SET|$t|${key}_meta]="DIFF($(grep -c '^>' "$LOGS/$SET-$t-$key.meta.diff"))"
    log "$SET: $t: mode/mtime differences after restore: $LOGS/$SET-$t-$key.meta.diff"
  fi
}

# ---------------------------------------------------------------- one data set
MISMATCH=0
run_set() {
  SET=$1
  local src large=0
  case $SET in
    share) src=$BENCH_SHARE_SRC; large=$BENCH_LARGE_MB ;;
    big) src=$BENCH_BIG_SRC ;;
    doc) src=$BENCH_DOC_SRC ;;
  esac
  [[ -d $src ]] || { log "data set $SET: $src is not a directory; skipped"; return; }
  src=$(cd "$src" && pwd -P)
  for t in "${TOOLS[@]}"; do TOOL_OK[$SET|$t]=1; done
  if [[ $BENCH_S3 == 1 ]]; then
    COFFER_ENV=(COFFER_STORAGE__BACKEND=s3 "COFFER_STORAGE__ENDPOINT=$COFFER_TEST_S3_ENDPOINT"
      "COFFER_STORAGE__BUCKET=$COFFER_TEST_S3_BUCKET" "COFFER_STORAGE__REGION=$AWS_DEFAULT_REGION"
      "COFFER_STORAGE__PREFIX=$S3_RUN-$SET-coffer"
      "COFFER_STORAGE__ACCESS_KEY_ID=$COFFER_TEST_S3_ACCESS_KEY_ID")
  fi
  [[ $COFFER_READY == 1 ]] || TOOL_OK[$SET|coffer]=0

  SET_DATA=$DATA/$SET
  log "$SET: preparing data set: $src -> $SET_DATA/tree (+ large files: ${large} MiB each)"
  local prep_start=$SECONDS
  mkdir -p "$SET_DATA/tree"
  cp -a "$src/." "$SET_DATA/tree/"
  if [[ $large != 0 ]]; then
    mkdir -p "$SET_DATA/large"
    local n=$((large * 1024 * 1024))
    det_stream random "$n" >"$SET_DATA/large/random.bin"
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
    }' >"$SET_DATA/large/text.log"
    # Sparse: mostly zeros (a real sparse file) with a few random 64 KiB islands.
    truncate -s "$n" "$SET_DATA/large/sparse.img"
    det_stream sparse $((64 * 1024 * 8)) >"$LOGS/islands.bin"
    local k
    for k in 0 1 2 3 4 5 6 7; do
      dd if="$LOGS/islands.bin" of="$SET_DATA/large/sparse.img" bs=65536 skip="$k" count=1 \
        seek=$(((n / 65536) * k / 8)) conv=notrunc status=none
    done
    rm -f "$LOGS/islands.bin"
  fi
  local files entries bytes
  files=$(find "$SET_DATA" -type f | wc -l)
  entries=$(find "$SET_DATA" -mindepth 1 | wc -l)
  bytes=$(du -sb --apparent-size "$SET_DATA" | awk '{print $1}')
  SET_INFO[$SET]=$(printf '%s%s: %s files, %s entries, %.1f MiB' "$src" \
    "$([[ $large != 0 ]] && printf ' + 3 x %s MiB (random, text, sparse)' "$large")" \
    "$files" "$entries" "$(awk -v x="$bytes" 'BEGIN { print x / 1048576 }')")
  log "$SET: data set ready in $((SECONDS - prep_start))s: ${SET_INFO[$SET]}"
  if [[ $SET == big ]] && ((bytes < 3 * 1024 * 1024 * 1024 || files < 50000)); then
    log "WARNING: the big data set is meant to hold >= 3 GiB and >= 50,000 files; $src has less (set BENCH_BIG_SRC)"
  fi

  # Phase 1: full + unchanged backups.
  local t
  for t in "${TOOLS[@]}"; do
    ok "$t" || continue
    settle
    if ! tool_init "$t"; then fail_tool "$t"; continue; fi
    settle "$SET_DATA"
    if ! tool_backup "$t" 1; then fail_tool "$t"; continue; fi
    R[$SET|$t|size1]=$(du_b "$(repo_path "$t")")
    settle "$SET_DATA"
    tool_backup "$t" 2 || true
  done

  # Phase 2: change ~1% of the files (every 100th regular file in sorted order).
  log "$SET: modifying ~1% of the files"
  local -a list
  mapfile -d '' list < <(cd "$SET_DATA" && find . -type f -print0 | LC_ALL=C sort -z)
  local modified=0 i f size
  for ((i = 50; i < ${#list[@]}; i += 100)); do
    f=$SET_DATA/${list[i]#./}
    size=$(stat -c %s "$f")
    if ((modified % 2 == 0 || size < 64)); then
      printf '\n# coffer-bench modification %d\n' "$modified" >>"$f"
    else # overwrite 16 bytes in the middle, size unchanged
      printf 'CofferBench%05d' "$modified" | dd of="$f" bs=1 seek=$((size / 2)) conv=notrunc status=none
    fi
    modified=$((modified + 1))
  done
  if [[ -f $SET_DATA/large/random.bin ]]; then # also a small in-place change inside a big file
    det_stream change 4096 | dd of="$SET_DATA/large/random.bin" bs=4096 seek=$((large * 256 / 2)) conv=notrunc status=none
  fi
  SET_INFO[$SET]+="; backup 3 after modifying $modified files"

  # Phase 3: incremental backup.
  for t in "${TOOLS[@]}"; do
    ok "$t" || continue
    settle "$SET_DATA"
    tool_backup "$t" 3 || true
    R[$SET|$t|size3]=$(du_b "$(repo_path "$t")")
    R[$SET|$t|state]=$(local_state_bytes "$t")
  done

  log "$SET: computing source manifests"
  content_manifest "$SET_DATA" >"$LOGS/$SET-source.content"
  meta_manifest "$SET_DATA" >"$LOGS/$SET-source.meta"

  # Phase 4: restores onto the disk, one tool after the other. Nothing is deleted between
  # them (see settle); the trees are checked once all are written.
  declare -A roots=()
  quiet_after_deletes
  for t in "${TOOLS[@]}"; do
    ok "$t" || continue
    settle "$(repo_path "$t")"
    if tool_restore "$t" restore "$RESTORES/$SET-$t"; then
      roots[$t]=$RESTORED_ROOT
    else
      R[$SET|$t|verify]=FAIL
    fi
  done
  for t in "${!roots[@]}"; do verify_tree "$t" verify "${roots[$t]}"; done
  if [[ $BENCH_KEEP_RESTORE != 1 ]]; then
    log "$SET: removing the restored trees (not timed)"
    for t in "${TOOLS[@]}"; do disk_rm "${RESTORES:?}/$SET-$t"; done
  fi

  # Phase 5: restores onto a tmpfs, where creating a file costs no journal: the same
  # engines where metadata calls are cheap from one thread.
  if [[ -n $BENCH_TMPFS ]]; then
    for t in "${TOOLS[@]}"; do
      ok "$t" || continue
      settle "$(repo_path "$t")"
      if tool_restore "$t" restore_tmpfs "$BENCH_TMPFS/$SET-$t"; then
        verify_tree "$t" verify_tmpfs "$RESTORED_ROOT"
      fi
      rm -rf "${BENCH_TMPFS:?}/$SET-$t"
    done
  fi

  # The data set and the repositories go; the next set starts with the same disk.
  disk_rm "$SET_DATA" "${CDIR:?}/$SET" "$REPOS/$SET-restic" "$REPOS/$SET-borg"
}

for s in "${SETS[@]}"; do run_set "$s"; done

# ---------------------------------------------------------------- report
isnum() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
cell() { # set tool metric kind -> formatted cell
  local s=$1 t=$2 m=$3 kind=$4 v
  if ! has_tool "$t"; then echo "-"; return; fi
  v=${R[$s|$t|$m]:-}
  if [[ -z $v ]]; then echo "n/a"; return; fi
  if ! isnum "$v"; then echo "$v"; return; fi
  case $kind in
    s) printf '%.2f' "$v" ;;
    kib) awk -v x="$v" 'BEGIN { printf "%.1f", x / 1024 }' ;;
    b) awk -v x="$v" 'BEGIN { printf "%.1f", x / 1048576 }' ;;
    *) echo "$v" ;;
  esac
}
ratio() { # set tool metric : tool/coffer
  local a=${R[$1|$2|$3]:-} c=${R[$1|coffer|$3]:-}
  if isnum "$a" && isnum "$c" && awk -v c="$c" 'BEGIN { exit !(c > 0) }'; then
    awk -v a="$a" -v c="$c" 'BEGIN { printf "%.2f", a / c }'
  else
    echo "-"
  fi
}
OPS=(init backup1 backup2 backup3 restore restore_tmpfs)
for s in "${SETS[@]}"; do
  for t in "${TOOLS[@]}"; do
    mx=""
    for op in "${OPS[@]}"; do
      v=${R[$s|$t|${op}_rss]:-}
      isnum "$v" || continue
      if [[ -z $mx ]] || ((v > mx)); then mx=$v; fi
    done
    [[ -n $mx ]] && R[$s|$t|max_rss]=$mx
  done
done

ROWS=(
  "repo init time (s)|init_s|s"
  "backup 1: full time (s)|backup1_s|s"
  "backup 2: unchanged time (s)|backup2_s|s"
  "backup 3: ~1% changed time (s)|backup3_s|s"
  "restore to disk time (s)|restore_s|s"
  "restore to tmpfs time (s)|restore_tmpfs_s|s"
  "peak RSS backup 1 (MiB)|backup1_rss|kib"
  "peak RSS backup 2 (MiB)|backup2_rss|kib"
  "peak RSS backup 3 (MiB)|backup3_rss|kib"
  "peak RSS restore, disk (MiB)|restore_rss|kib"
  "peak RSS restore, tmpfs (MiB)|restore_tmpfs_rss|kib"
  "peak RSS max over ops (MiB)|max_rss|kib"
  "repo size after backup 1 (MiB)|size1|b"
  "repo size after backup 3 (MiB)|size3|b"
  "local cache/state (MiB)|state|b"
  "restore content == source|verify|"
  "restore mode+mtime == source|verify_meta|"
  "tmpfs restore content == source|verify_tmpfs|"
)
LOAD_END=$(loadavg)
{
  echo
  echo "=== Coffer vs restic vs Borg ($STARTED_AT, $(nproc) cores, $(uname -r)) ==="
  for t in "${ALL_TOOLS[@]}"; do
    has_tool "$t" && printf 'version:  %-7s %s\n' "$t" "${VERSION[$t]:-n/a}"
  done
  printf 'load avg: %s at start, %s at end' "$LOAD_START" "$LOAD_END"
  if awk -v a="$LOAD_START" -v b="$LOAD_END" -v n="$(nproc)" 'BEGIN { exit !(a > n / 2 || b > n / 2) }'; then
    printf '  (WARNING: machine was busy, timings are noisy)'
  fi
  printf '\ncaches:   %s\n' "$([[ $BENCH_DROP_CACHES == 1 ]] && echo 'dropped before every timed operation, then its input read once' || echo 'NOT dropped (not root): later tools may inherit a slower file system state')"
  printf 'disk:     %s (%s)' "$BENCH_DIR" "$(findmnt -n -o FSTYPE,OPTIONS -T "$BENCH_DIR" 2>/dev/null || echo '?')"
  [[ -n $BENCH_TMPFS ]] && printf '; tmpfs: %s' "$BENCH_TMPFS"
  printf '\n'
  fmt='%-34s %11s %11s %11s %15s %13s\n'
  for s in "${SETS[@]}"; do
    [[ -n ${SET_INFO[$s]:-} ]] || continue
    echo
    echo "--- data set '$s': ${SET_INFO[$s]}"
    # shellcheck disable=SC2059
    printf "$fmt" metric coffer restic borg restic/coffer borg/coffer
    # shellcheck disable=SC2059
    printf "$fmt" "----------------------------------" ----------- ----------- ----------- --------------- -------------
    for row in "${ROWS[@]}"; do
      IFS='|' read -r label key kind <<<"$row"
      [[ $key == restore_tmpfs* || $key == verify_tmpfs ]] && [[ -z $BENCH_TMPFS ]] && continue
      c=$(cell "$s" coffer "$key" "$kind")
      if [[ $key == init_s ]] && [[ ${R[$s|coffer|backup1_s]:-} != "" ]]; then c="(in bk 1)"; fi
      if [[ -z $kind ]]; then rr="" rb=""; else rr=$(ratio "$s" restic "$key") rb=$(ratio "$s" borg "$key"); fi
      # shellcheck disable=SC2059
      printf "$fmt" "$label" "$c" "$(cell "$s" restic "$key" "$kind")" "$(cell "$s" borg "$key" "$kind")" "$rr" "$rb"
    done
    for op in backup1 restore restore_tmpfs; do
      [[ -n ${PHASES[$s|$op]:-} ]] && printf 'coffer %-13s %s\n' "$op:" "${PHASES[$s|$op]}"
    done
  done
  echo
  echo "ratios: other/coffer; every metric is lower-is-better, so a ratio > 1 means coffer is better."
  echo "coffer phases: thread seconds per phase, summed over its threads (they overlap); see tests/bench/README.md."
  for t in "${TOOLS[@]}"; do
    [[ -n ${TOOL_ERR[$t]:-} ]] && echo "$t: ERROR: ${TOOL_ERR[$t]}"
  done
  ((MISMATCH)) && echo "!!! RESTORE CONTENT MISMATCH — see $LOGS/*.content.diff !!!"
  echo "logs: $LOGS"
} | tee "$BENCH_DIR/results.txt"

{
  printf 'set\tmetric'; for t in "${ALL_TOOLS[@]}"; do printf '\t%s' "$t"; done; printf '\n'
  for s in "${SETS[@]}"; do
    for row in "${ROWS[@]}"; do
      IFS='|' read -r label key kind <<<"$row"
      printf '%s\t%s' "$s" "$key"; for t in "${ALL_TOOLS[@]}"; do printf '\t%s' "${R[$s|$t|$key]:-n/a}"; done; printf '\n'
    done
  done
} >"$BENCH_DIR/results.tsv"

exit $((MISMATCH ? 3 : 0))
