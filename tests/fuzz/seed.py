"""Gives a fresh Coffer server real data before the fuzzer runs: one source over a small
directory, one finished backup (so snapshot and job endpoints have something to find).

Usage: seed.py BASE_URL FIXTURE_DIR OUT_JSON, with COFFER_FUZZ_ADMIN_PASSWORD set.
Writes the ids it made to OUT_JSON for hooks.py. Standard library only.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request


def call(base, method, path, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        sys.exit(f"seed: {method} {path} answered {e.code}: {e.read().decode(errors='replace')}")


def make_fixture(root):
    os.makedirs(os.path.join(root, "docs", "deep"), exist_ok=True)
    files = {
        "readme.txt": b"coffer fuzz fixture\n",
        "docs/notes.md": b"# notes\n" * 50,
        "docs/deep/data.bin": bytes(range(256)) * 64,
    }
    for rel, content in files.items():
        with open(os.path.join(root, rel), "wb") as f:
            f.write(content)


def main():
    base, fixture, out = sys.argv[1:4]
    password = os.environ["COFFER_FUZZ_ADMIN_PASSWORD"]
    make_fixture(fixture)
    _, login = call(base, "POST", "/api/login", {"username": "admin", "password": password})
    token = login["token"]
    _, source = call(base, "POST", "/api/sources", {"name": "fuzz", "path": fixture}, token)
    status, job = call(base, "POST", "/api/backup", {"source": "fuzz"}, token)
    assert status == 202, status
    deadline = time.monotonic() + 120
    while job["state"] in ("queued", "running"):
        if time.monotonic() > deadline:
            sys.exit(f"seed: backup job {job['id']} still {job['state']} after 120 s")
        time.sleep(0.2)
        _, job = call(base, "GET", f"/api/jobs/{job['id']}", token=token)
    if job["state"] != "succeeded":
        sys.exit(f"seed: backup job ended {job['state']}: {job.get('error')}")
    seed = {
        "admin_id": login["user"]["id"],
        "source_id": source["id"],
        "snapshot_id": job["snapshot_id"],
        "job_id": job["id"],
    }
    with open(out, "w") as f:
        json.dump(seed, f)
    print(
        f"seed: source {source['id']} ({fixture}), snapshot {seed['snapshot_id'][:12]}, job {job['id']}"
    )


if __name__ == "__main__":
    main()
