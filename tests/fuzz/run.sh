#!/usr/bin/env bash
# Schema-driven fuzzing: schemathesis runs every operation of the live OpenAPI document
# with every check against a fresh server holding one source and one backup, as the
# admin (tests/fuzz/hooks.py keeps that login alive). Fails on any failure schemathesis
# reports; always stops the server. Needs python3 (with venv) and cargo; installs the
# rest (pinned in tests/fuzz/requirements.txt) into target/ci-venvs/fuzz.
#
# Tuning (environment): FUZZ_MAX_EXAMPLES (per operation, default 100), FUZZ_SEED (a
# hypothesis seed, to replay a run), FUZZ_WORKERS (default 2), FUZZ_KEEP=1 (keep the
# temporary directory: server log, seed, JUnit report; it is always kept on failure).
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/support/server.sh

venv fuzz tests/fuzz/requirements.txt
work=$(mktemp -d "${TMPDIR:-/tmp}/coffer-fuzz.XXXXXX")
cleanup() {
  stop_server
  if [[ ${keep_work:-0} == 1 || -n ${FUZZ_KEEP:-} ]]; then echo "kept $work (server.log, report/)"; else rm -rf "$work"; fi
}
trap 'keep_work=1' ERR
trap cleanup EXIT

start_server "$work"
mkdir -p "$work/fixture"
export COFFER_FUZZ_URL=$base_url COFFER_FUZZ_ADMIN_PASSWORD=$admin_password \
  COFFER_FUZZ_BIN=$coffer COFFER_FUZZ_DATA_DIR=$data_dir COFFER_FUZZ_FIXTURE=$work/fixture \
  COFFER_FUZZ_SEED=$work/seed.json COFFER_FUZZ_AUTH_LOG=$work/auth.log COFFER_FUZZ_WORK=$work
"$py" tests/fuzz/seed.py "$base_url" "$work/fixture" "$work/seed.json"

args=(
  run "$base_url/openapi.json"
  --checks all
  --max-examples "${FUZZ_MAX_EXAMPLES:-100}"
  --workers "${FUZZ_WORKERS:-2}"
  --request-timeout 60
  --generation-database none
  --report junit --report-dir "$work/report"
  --no-color
)
[[ -n ${FUZZ_SEED:-} ]] && args+=(--seed "$FUZZ_SEED")
started=$(date +%s)
set +e
SCHEMATHESIS_HOOKS=hooks PYTHONPATH=tests/fuzz timeout 1200 \
  "$(dirname "$py")/schemathesis" --config-file tests/fuzz/schemathesis.toml "${args[@]}" 2>&1 \
  | tee "$work/schemathesis.log"
status=${PIPESTATUS[0]}
set -e
echo "fuzzing took $(( $(date +%s) - started )) s; admin logins: $(grep -c '^login' "$work/auth.log" || true)," \
  "admin restored through the CLI: $(grep -c '^restore' "$work/auth.log" || true)"
if [[ $status != 0 ]]; then
  keep_work=1
  [[ $status == 124 ]] && echo "schemathesis did not finish within 20 minutes"
  echo "schemathesis failed (exit $status); the server's last log lines:"
  tail -n 50 "$work/server.log"
  exit "$status"
fi
if grep -qE 'ERROR|panicked' "$work/server.log"; then
  keep_work=1
  echo "the server logged errors during fuzzing:"; grep -E 'ERROR|panicked' "$work/server.log" | head -n 20
  exit 1
fi
# A plain closing line for CI's summary (schemathesis's own reads like pytest's).
cases=$(grep -oE '[0-9]+ generated, [0-9]+ passed' "$work/schemathesis.log" | tail -n 1 | grep -oE '[0-9]+ passed' | cut -d' ' -f1)
echo "fuzz: ${cases:-0} passed, 0 failed"
