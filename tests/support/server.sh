# Shared by tests/fuzz/run.sh and tests/sdk/run.sh (sourced, not run): a Python venv
# with exactly the pinned packages, and a Coffer server on a free port with a fresh data
# directory. The caller sets `set -euo pipefail`, cds to the repository root and calls
# `stop_server` from its EXIT trap.

# venv NAME REQUIREMENTS: creates (or reuses) target/ci-venvs/NAME with exactly the
# packages pinned in REQUIREMENTS (every dependency is pinned there: --no-deps, then
# `pip check`), and sets $py to its python. Rebuilt whenever REQUIREMENTS changes.
venv() {
  local dir=target/ci-venvs/$1 reqs=$2
  local stamp
  stamp=$(sha256sum "$reqs" | cut -d' ' -f1)
  if [[ ! -x $dir/bin/python || $(cat "$dir/.requirements.sha256" 2>/dev/null) != "$stamp" ]]; then
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$reqs"
    "$dir/bin/python" -m pip check
    echo "$stamp" >"$dir/.requirements.sha256"
  fi
  py=$PWD/$dir/bin/python
}

# start_server WORKDIR: builds the server, starts it with data under WORKDIR/data and
# logs in WORKDIR/server.log, and waits for GET /api/health. Sets $coffer (the binary),
# $data_dir, $base_url, $admin_password and $server_pid.
start_server() {
  local work=$1 port
  cargo build -p coffer --locked --quiet
  # Where cargo put it: CARGO_TARGET_DIR when set (a shared target directory), else target/.
  coffer=${CARGO_TARGET_DIR:-$PWD/target}/debug/coffer
  data_dir=$work/data
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  base_url=http://127.0.0.1:$port
  admin_password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
  # The built-in defaults, not config/coffer.toml (which someone may have edited); the
  # empty file keeps the CLI from reading it.
  : >"$work/coffer.toml"
  export COFFER_CONFIG=$work/coffer.toml COFFER_LOG__LEVEL=warn
  COFFER_ADMIN_PASSWORD=$admin_password "$coffer" --data-dir "$data_dir" serve --port "$port" \
    >"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 150); do
    if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/api/health", timeout=2)' \
      "$base_url" 2>/dev/null; then
      echo "coffer serving at $base_url (pid $server_pid, data in $data_dir)"
      return 0
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "coffer exited during start-up:"; cat "$work/server.log"; return 1
    fi
    sleep 0.2
  done
  echo "coffer did not answer GET /api/health within 30 s:"; cat "$work/server.log"; return 1
}

# stop_server: SIGTERM, then SIGKILL after 10 s; safe to call when nothing was started.
stop_server() {
  [[ -n ${server_pid:-} ]] || return 0
  kill "$server_pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}
