#!/usr/bin/env bash
# Speed at scale: p99 latency of the dashboard, the snapshot list and the audit list with
# 100,000 snapshots and 1,000,000 audit rows in the catalog, at a fixed 200 requests/s on
# loopback, on SQLite and on PostgreSQL. Goal: p99 < 20 ms. Then the time and the server's
# peak memory for exporting the whole catalog as CSV, the whole audit trail as CSV and
# the PDF report (SCALE_EXPORTS=0 skips them). A benchmark, not a test: run it on an idle
# machine and read the numbers.
#
# Usage:  tests/bench/scale.sh
#         SCALE_DATABASES=sqlite SCALE_DURATION=10 tests/bench/scale.sh   (quicker)
#
# For each database: a fresh data directory (and, for PostgreSQL, a throwaway database),
# `coffer dev seed`, `coffer serve` on a free port, a login, then `coffer-loadgen` once
# per URL; finally `coffer audit verify` on the seeded trail. Everything it creates is
# removed at the end (SCALE_KEEP=1 keeps the data directories). Exit status: 0 when every
# p99 meets the goal without errors, 1 otherwise, 2 when a setup step fails.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
cd "$REPO_ROOT"

SCALE_DATABASES=${SCALE_DATABASES:-sqlite postgres}
SCALE_SNAPSHOTS=${SCALE_SNAPSHOTS:-100000}
SCALE_AUDIT_ROWS=${SCALE_AUDIT_ROWS:-1000000}
SCALE_SOURCES=${SCALE_SOURCES:-20}
SCALE_RATE=${SCALE_RATE:-200}
SCALE_DURATION=${SCALE_DURATION:-30}
SCALE_WARMUP=${SCALE_WARMUP:-5}
SCALE_CONNECTIONS=${SCALE_CONNECTIONS:-16}
SCALE_GOAL_MS=${SCALE_GOAL_MS:-20}
SCALE_URLS=${SCALE_URLS:-/api/dashboard /api/backups?limit=50 /api/audit?limit=50}
# PostgreSQL server for the throwaway database (trust auth as user postgres).
SCALE_PG_HOST=${SCALE_PG_HOST:-127.0.0.1}
SCALE_PG_PORT=${SCALE_PG_PORT:-5432}
SCALE_PG_USER=${SCALE_PG_USER:-postgres}
SCALE_BUILD=${SCALE_BUILD:-1} # 0: use the binaries already in target/release
SCALE_VERIFY=${SCALE_VERIFY:-1} # 0: skip `coffer audit verify`
SCALE_KEEP=${SCALE_KEEP:-0}
SCALE_EXPORTS=${SCALE_EXPORTS:-1} # 0: skip timing the CSV and PDF exports
SCALE_DIR=${SCALE_DIR:-${TMPDIR:-/tmp}}

TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
COFFER=$TARGET_DIR/release/coffer
LOADGEN=$TARGET_DIR/release/coffer-loadgen

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 2; }

for c in curl jq python3; do command -v "$c" >/dev/null 2>&1 || die "required command not found: $c"; done
if [[ " $SCALE_DATABASES " == *" postgres "* ]]; then
  command -v psql >/dev/null 2>&1 || die "psql not found (needed for SCALE_DATABASES=postgres)"
fi

if [[ $SCALE_BUILD == 1 ]]; then
  # `coffer dev seed` exists only in a build with the bench-seed feature.
  log "building (cargo build --release -p coffer -p coffer-loadgen --features coffer/bench-seed) ..."
  cargo build --release --locked -p coffer -p coffer-loadgen --features coffer/bench-seed >&2
fi
[[ -x $COFFER && -x $LOADGEN ]] || die "binaries missing: $COFFER, $LOADGEN"

# ---------------------------------------------------------------- cleanup
work= server_pid= pg_db=
psql_admin() { psql -X -q -v ON_ERROR_STOP=1 -h "$SCALE_PG_HOST" -p "$SCALE_PG_PORT" -U "$SCALE_PG_USER" -d postgres "$@"; }
stop_server() {
  [[ -n $server_pid ]] || return 0
  kill "$server_pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}
cleanup_round() {
  stop_server
  if [[ -n $pg_db ]]; then
    psql_admin -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || log "could not drop database $pg_db"
    pg_db=
  fi
  if [[ -n $work ]]; then
    if [[ $SCALE_KEEP == 1 ]]; then log "kept $work"; else rm -rf "$work"; fi
    work=
  fi
}
trap cleanup_round EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

declare -a ROWS=() # "db|url|count|errors|rate|p50|p90|p99|p999|max"
declare -A SEED_INFO=() VERIFY_INFO=()
declare -a EXPORTS=() # "db|url|status|seconds|bytes|lines|peak rss MiB"

# The server's peak resident memory so far, in MiB.
peak_rss_mb() { awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$server_pid/status" 2>/dev/null || echo -; }

# Times one export end to end (the whole body read and counted) and the server's peak
# memory after it: the CSVs stream, so memory must not grow with the catalog.
time_exports() {
  local db=$1 base_url=$2 token=$3 url out status secs bytes lines
  log "$db: peak RSS before exports $(peak_rss_mb) MiB"
  for url in /api/export/csv /api/export/audit.csv /api/export/pdf; do
    log "$db: GET $url ..."
    out=$(curl -sS -o "$work/export.out" -w '%{http_code} %{time_total} %{size_download}' \
      --max-time 900 -H "Authorization: Bearer $token" "$base_url$url") || out="000 - -"
    read -r status secs bytes <<<"$out"
    if [[ $url == *.csv || $url == /api/export/csv ]]; then lines=$(wc -l <"$work/export.out"); else lines=-; fi
    EXPORTS+=("$db|$url|$status|$secs|$bytes|$lines|$(peak_rss_mb)")
    rm -f "$work/export.out"
  done
}

run_database() {
  local db=$1 port base_url password token dash_status url out line
  work=$(mktemp -d "$SCALE_DIR/coffer-scale.XXXXXX")
  local data=$work/data
  # Built-in defaults, not config/coffer.toml; the empty file keeps the CLI from reading it.
  : >"$work/coffer.toml"
  export COFFER_CONFIG=$work/coffer.toml COFFER_LOG__LEVEL=warn
  unset COFFER_DATABASE__URL
  if [[ $db == postgres ]]; then
    pg_db=coffer_bench_$$
    psql_admin -c "CREATE DATABASE $pg_db" >/dev/null
    export COFFER_DATABASE__URL="postgres://$SCALE_PG_USER@$SCALE_PG_HOST:$SCALE_PG_PORT/$pg_db"
  fi

  log "$db: seeding $SCALE_SNAPSHOTS snapshots over $SCALE_SOURCES sources and $SCALE_AUDIT_ROWS audit rows ..."
  local t0=$SECONDS
  "$COFFER" --data-dir "$data" dev seed --snapshots "$SCALE_SNAPSHOTS" --audit-rows "$SCALE_AUDIT_ROWS" \
    --sources "$SCALE_SOURCES" | tee "$work/seed.log" >&2
  SEED_INFO[$db]="$(tail -n 1 "$work/seed.log")"
  log "$db: seeded in $((SECONDS - t0)) s"
  if [[ $db == sqlite ]]; then
    log "$db: catalog file $(du -h "$data/coffer.db" | cut -f1)"
  else
    log "$db: database size $(psql_admin -tA -c "SELECT pg_size_pretty(pg_database_size('$pg_db'))")"
  fi

  port=$(free_port)
  base_url=http://127.0.0.1:$port
  password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
  COFFER_ADMIN_PASSWORD=$password "$COFFER" --data-dir "$data" serve --port "$port" >"$work/server.log" 2>&1 &
  server_pid=$!
  local up=0
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null --max-time 2 "$base_url/api/health" 2>/dev/null; then up=1; break; fi
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; die "$db: coffer exited during start-up"; }
    sleep 0.2
  done
  ((up)) || { cat "$work/server.log" >&2; die "$db: no answer from GET /api/health within 60 s"; }
  token=$(curl -fsS --max-time 30 -H 'Content-Type: application/json' \
    -d "$(jq -n --arg p "$password" '{username: "admin", password: $p}')" \
    "$base_url/api/login" | jq -r .token)
  [[ -n $token && $token != null ]] || die "$db: login failed"
  log "$db: coffer serving at $base_url (pid $server_pid)"

  for url in $SCALE_URLS; do
    if [[ $url == /api/dashboard* ]]; then
      dash_status=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$base_url$url")
      if [[ $dash_status == 404 ]]; then
        log "$db: $url answers 404 (not implemented in this build): skipped"
        continue
      fi
    fi
    log "$db: GET $url at $SCALE_RATE req/s for $SCALE_DURATION s (after $SCALE_WARMUP s warm-up) ..."
    out=$(LOADGEN_TOKEN=$token "$LOADGEN" --url "$base_url$url" --rate "$SCALE_RATE" \
      --duration "$SCALE_DURATION" --warmup "$SCALE_WARMUP" --connections "$SCALE_CONNECTIONS") || true
    printf '%s\n' "$out" | grep -v '^#\|^result' >&2 || true
    line=$(printf '%s\n' "$out" | grep '^result' | head -n 1 || true)
    if [[ -z $line ]]; then
      ROWS+=("$db|$url|0|-|0|-|-|-|-|-")
      continue
    fi
    IFS=$'\t' read -r _ _ count errors rate p50 p90 p99 p999 max <<<"$line"
    ROWS+=("$db|$url|$count|$errors|$rate|$p50|$p90|$p99|$p999|$max")
  done
  [[ $SCALE_EXPORTS == 1 ]] && time_exports "$db" "$base_url" "$token"
  stop_server

  if [[ $SCALE_VERIFY == 1 ]]; then
    log "$db: coffer audit verify ..."
    local t1=$SECONDS
    if VERIFY_INFO[$db]="$("$COFFER" --data-dir "$data" audit verify 2>&1)"; then
      VERIFY_INFO[$db]+=" ($((SECONDS - t1)) s)"
    else
      VERIFY_INFO[$db]="FAILED: ${VERIFY_INFO[$db]}"
    fi
    log "$db: ${VERIFY_INFO[$db]}"
  fi
  cleanup_round
}

LOAD_START=$(cut -d' ' -f1 /proc/loadavg)
for db in $SCALE_DATABASES; do
  case $db in sqlite | postgres) run_database "$db" ;; *) die "unknown database in SCALE_DATABASES: $db" ;; esac
done
LOAD_END=$(cut -d' ' -f1 /proc/loadavg)

# ---------------------------------------------------------------- report
status=0
{
  echo
  echo "=== Coffer speed at scale ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -r)) ==="
  echo "catalog: $SCALE_SNAPSHOTS snapshots over $SCALE_SOURCES sources, $SCALE_AUDIT_ROWS audit rows"
  echo "load:    $SCALE_RATE req/s open loop, $SCALE_DURATION s after $SCALE_WARMUP s warm-up, $SCALE_CONNECTIONS connections, one URL at a time"
  echo "latency: from each request's scheduled send time to the last byte of the response (ms)"
  printf 'load avg: %s at start, %s at end\n' "$LOAD_START" "$LOAD_END"
  for db in $SCALE_DATABASES; do
    [[ -n ${SEED_INFO[$db]:-} ]] && echo "seed ($db): ${SEED_INFO[$db]}"
    [[ -n ${VERIFY_INFO[$db]:-} ]] && echo "audit verify ($db): ${VERIFY_INFO[$db]}"
  done
  echo
  fmt='%-9s %-24s %6s %7s %8s %8s %8s %8s %8s %6s  %s\n'
  # shellcheck disable=SC2059
  printf "$fmt" database url count rate/s p50 p90 p99 p99.9 max errors verdict
  for row in "${ROWS[@]}"; do
    IFS='|' read -r db url count errors rate p50 p90 p99 p999 max <<<"$row"
    verdict=PASS
    if [[ $count == 0 || $errors != 0 ]] || ! awk -v p="$p99" -v g="$SCALE_GOAL_MS" 'BEGIN { exit !(p + 0 < g + 0) }'; then
      verdict=FAIL
      status=1
    fi
    # shellcheck disable=SC2059
    printf "$fmt" "$db" "$url" "$count" "$rate" "$p50" "$p90" "$p99" "$p999" "$max" "$errors" "$verdict"
  done
  for db in $SCALE_DATABASES; do
    [[ ${VERIFY_INFO[$db]:-} == FAILED* ]] && status=1
  done
  if ((${#EXPORTS[@]})); then
    echo
    echo "exports (whole catalog, streamed; the PDF covers the last 30 days; peak RSS is the server's high-water mark after each):"
    efmt='%-9s %-24s %6s %9s %12s %10s %14s\n'
    # shellcheck disable=SC2059
    printf "$efmt" database url status seconds bytes lines "peak RSS MiB"
    for row in "${EXPORTS[@]}"; do
      IFS='|' read -r db url st secs bytes lines rss <<<"$row"
      [[ $st == 200 ]] || status=1
      # shellcheck disable=SC2059
      printf "$efmt" "$db" "$url" "$st" "$secs" "$bytes" "$lines" "$rss"
    done
  fi
  echo
  if ((status == 0)); then
    echo "PASS: every p99 < $SCALE_GOAL_MS ms at $SCALE_RATE req/s, no errors"
  else
    echo "FAIL: goal p99 < $SCALE_GOAL_MS ms at $SCALE_RATE req/s with no errors not met (see the verdicts above)"
  fi
}
exit "$status"
