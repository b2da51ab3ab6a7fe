"""Schemathesis hooks for fuzzing Coffer (loaded through SCHEMATHESIS_HOOKS by run.sh).

1. Authentication that survives the fuzzer. Every request is sent as the admin. The
   fuzzer calls destructive operations with valid data: `logout` revokes the token,
   `resetUserPassword` changes the admin's password, `updateUser` can deactivate or
   demote the admin once it has created a second admin, and repeated failed logins lock
   the fuzzer's address. So the provider logs in from a loopback address of its own
   (127.1.x.y, never the fuzzer's 127.0.0.1, so the address lock-out does not reach it),
   schemathesis refetches the token whenever a response is 401, and when the admin
   cannot log in or is no longer an admin, the provider restores it with the CLI beside
   the running server (`coffer users enable / set-role / reset-password`).

2. Real ids. Besides the generated ids, path parameters are sometimes the seeded source,
   snapshot, job and the admin user, so the fuzzer gets past 404 into the handlers that
   read real data. Deletes keep generated ids only, so the seeded data stays for the
   whole run.

3. Confinement. A source is a directory on the server that a backup then reads in full;
   a fuzzed `createSource` or `updateSource` naming an existing directory such as `/`
   would make the server back up the whole machine (and `previewExcludes` walk it).
   Such a path is replaced with the seeded fixture directory; paths that are not existing directories (what the
   validation code sees almost always) are sent as generated. A replica's directory
   (`createReplica`, `updateReplica`) is always the run's own `<data dir>-replicas`: a
   copy writes there.

Environment (set by run.sh): COFFER_FUZZ_URL, COFFER_FUZZ_ADMIN_PASSWORD, COFFER_FUZZ_BIN,
COFFER_FUZZ_DATA_DIR, COFFER_FUZZ_SEED (the JSON written by seed.py), COFFER_FUZZ_FIXTURE.
"""

import http.client
import itertools
import json
import os
import subprocess
import threading
import time
import urllib.parse

import schemathesis
from hypothesis import strategies as st

URL = urllib.parse.urlsplit(os.environ["COFFER_FUZZ_URL"])
PASSWORD = os.environ["COFFER_FUZZ_ADMIN_PASSWORD"]
COFFER = os.environ["COFFER_FUZZ_BIN"]
DATA_DIR = os.environ["COFFER_FUZZ_DATA_DIR"]
FIXTURE = os.path.realpath(os.environ["COFFER_FUZZ_FIXTURE"])
# Where fuzzed replicas go: beside the data directory, inside the run's temporary one.
REPLICAS = os.path.realpath(DATA_DIR) + "-replicas"
with open(os.environ["COFFER_FUZZ_SEED"]) as f:
    SEED = json.load(f)

_lock = threading.Lock()
_addresses = (f"127.1.{i // 250}.{i % 250 + 1}" for i in itertools.count())
AUTH_LOG = os.environ.get("COFFER_FUZZ_AUTH_LOG")


def _note(line):
    """One line per login and per restore, for run.sh's summary."""
    if AUTH_LOG:
        with open(AUTH_LOG, "a") as f:
            f.write(line + "\n")


def _login():
    """POST /api/login as admin from a fresh loopback address: (status, body, Retry-After)."""
    conn = http.client.HTTPConnection(
        URL.hostname, URL.port, timeout=60, source_address=(next(_addresses), 0)
    )
    try:
        body = json.dumps({"username": "admin", "password": PASSWORD})
        conn.request("POST", "/api/login", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            data = json.loads(raw)
        except ValueError:
            data = {"raw": raw.decode(errors="replace")}
        return resp.status, data, resp.getheader("Retry-After")
    finally:
        conn.close()


def _cli(*args, stdin=None):
    subprocess.run(
        [COFFER, "--data-dir", DATA_DIR, "users", *args],
        input=stdin,
        text=True,
        check=True,
        capture_output=True,
        timeout=120,
    )


def _restore_admin():
    """Puts the admin back the way the run started: active, role admin, known password."""
    _note("restore")
    _cli("enable", "admin")
    _cli("set-role", "admin", "admin")
    _cli("reset-password", "admin", "--password-stdin", stdin=PASSWORD + "\n")


@schemathesis.auth()
class AdminToken:
    def get(self, case, ctx):
        with _lock:
            last = None
            for _ in range(4):
                status, data, retry_after = _login()
                _note(f"login {status}")
                if status == 200 and data["user"]["role"] == "admin":
                    return data["token"]
                last = (status, data)
                if status == 429:
                    # The fuzzer tried `admin` with wrong passwords often enough to slow
                    # the username itself down (at most a minute).
                    time.sleep(min(int(retry_after or "5"), 65))
                elif status in (200, 401):
                    _restore_admin()
                else:
                    break
            raise RuntimeError(f"cannot log in as admin: {last}")

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


# Which seeded id fits which path.
_REAL_IDS = [
    ("/api/backups/{id}", SEED["snapshot_id"]),
    ("/api/restore/{id}", SEED["snapshot_id"]),
    ("/api/jobs/{id}", SEED["job_id"]),
    ("/api/sources/{id}", SEED["source_id"]),
    ("/api/users/{id}", SEED["admin_id"]),
]


@schemathesis.hook
def flatmap_path_parameters(context, path_parameters):
    op = context.operation
    if op is None or op.method.upper() == "DELETE" or not isinstance(path_parameters, dict):
        return st.just(path_parameters)
    if "id" not in path_parameters:
        return st.just(path_parameters)
    for prefix, real in _REAL_IDS:
        if op.path.startswith(prefix):
            return st.one_of(st.just(path_parameters), st.just({**path_parameters, "id": real}))
    return st.just(path_parameters)


def _is_outside_fixture_dir(path):
    if not isinstance(path, str):
        return False
    try:
        if not os.path.isdir(path):
            return False
        real = os.path.realpath(path)
    except (ValueError, OSError):
        return False
    return real != FIXTURE and not real.startswith(FIXTURE + os.sep)


@schemathesis.hook
def map_case(context, case):
    op = context.operation
    if (
        op is not None
        and (op.path.startswith("/api/sources") or op.path == "/api/exclude/preview")
        and op.method.upper() in ("POST", "PATCH")
        and isinstance(case.body, dict)
        and _is_outside_fixture_dir(case.body.get("path"))
    ):
        case.body = {**case.body, "path": FIXTURE}
    if (
        op is not None
        and op.path.startswith("/api/replicas")
        and op.method.upper() in ("POST", "PATCH")
        and isinstance(case.body, dict)
        and isinstance(case.body.get("root"), str)
    ):
        # A replica's directory is written to by the next copy (the fuzzer syncs):
        # always one of the run's own, never a generated path on the machine.
        case.body = {**case.body, "root": REPLICAS}
    return case
