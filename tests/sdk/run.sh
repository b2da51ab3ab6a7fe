#!/usr/bin/env bash
# A client generated from openapi/openapi.json by openapi-python-client (into a temporary
# directory, never committed), then tests/sdk/flow.py drives a fresh server through it:
# log in, add a source, back up, list, browse, download (tar and zip), restore, verify,
# comparing everything byte for byte with the source. Fails when the generator reports a
# problem with the spec or any step fails; always stops the server. Needs python3 (with
# venv) and cargo; installs the rest (pinned in tests/sdk/requirements.txt) into
# target/ci-venvs/sdk.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/support/server.sh

venv sdk tests/sdk/requirements.txt
work=$(mktemp -d "${TMPDIR:-/tmp}/coffer-sdk.XXXXXX")
cleanup() {
  stop_server
  if [[ ${keep_work:-0} == 1 ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap 'keep_work=1' ERR
trap cleanup EXIT

# The generator formats its output with ruff, found on PATH (it is in the venv).
PATH=$(dirname "$py"):$PATH openapi-python-client generate --path openapi/openapi.json \
  --config tests/sdk/generator.yml --meta none --output-path "$work/client/coffer_client" >"$work/generate.log" 2>&1 \
  || { cat "$work/generate.log"; exit 1; }
cat "$work/generate.log"
# The generator still writes a client when it had to drop parts of the spec; it says so
# with warnings, which are spec problems to fix in the poem-openapi annotations.
if grep -qiE 'warning|error|unable|cannot' "$work/generate.log"; then
  echo "openapi-python-client could not use all of openapi/openapi.json (above)"; exit 1
fi

start_server "$work"
COFFER_SDK_ADMIN_PASSWORD=$admin_password PYTHONPATH=$work/client \
  "$py" tests/sdk/flow.py "$base_url" "$data_dir" "$work"
