"""The whole backup flow, driven through a client generated from openapi/openapi.json by
openapi-python-client: its typed models and api functions only, no hand-written HTTP.
The admin's password opens one session, which creates a personal access token; the
whole flow then runs with that token only, as a CI job would, and ends by revoking it.

Usage: flow.py BASE_URL DATA_DIR WORK_DIR, with the generated package `coffer_client`
importable and COFFER_SDK_ADMIN_PASSWORD set (see run.sh). Every step is asserted; any
mismatch raises, which exits non-zero.
"""

import datetime
import os
import random
import stat
import sys
import tarfile
import time
import zipfile

from coffer_client import AuthenticatedClient, Client
from coffer_client.api.auth import get_me, login
from coffer_client.api.backups import (
    browse_backup,
    download_backup,
    get_backup,
    list_backups,
    start_backup,
    start_restore,
    start_verify,
)
from coffer_client.api.jobs import get_job, get_job_log
from coffer_client.api.reports import export_audit_csv, export_backups_csv, export_pdf
from coffer_client.api.settings import get_settings, update_settings
from coffer_client.api.sources import create_source, preview_schedule
from coffer_client.api.system import get_health
from coffer_client.api.tokens import create_token, list_tokens, revoke_token
from coffer_client.models import (
    ArchiveFormatDto,
    BackupDto,
    BackupPage,
    CreateSourceRequest,
    EntryType,
    Health,
    JobDto,
    JobKindDto,
    JobLogDto,
    LogLevelDto,
    JobStateDto,
    LoginRequest,
    LoginResponse,
    MeResponse,
    OverallStatus,
    RestoreRequest,
    OriginDto,
    QuotaSettingDto,
    RoleName,
    SchedulePreviewDto,
    SettingsDto,
    SourceDto,
    BackupBySourceName,
    CreatedTokenResponse,
    CreateTokenRequest,
    TokenDto,
    TreePage,
    UpdateSettingsRequest,
)
from coffer_client.types import UNSET, File, Response

BIG = 3 * 1024 * 1024 + 12345  # > 1 MiB, spans several chunks


STEPS = []


def step(message):
    STEPS.append(message)
    print(f"  - {message}", flush=True)


def expect(response: Response, status: int, model: type):
    """The parsed body of a response that must have `status` and parse as `model`."""
    assert response.status_code == status, (
        f"expected {status}, got {response.status_code}: {response.content[:500]!r}"
    )
    assert isinstance(response.parsed, model), f"expected {model.__name__}, got {response.parsed!r}"
    return response.parsed


# --- the source tree and how to compare trees ----------------------------------------


def make_source(root):
    """A small tree: top-level files, an empty file, an executable, an empty directory,
    nested directories, and one file over 1 MiB."""
    files = {
        "readme.txt": b"Coffer SDK flow\n",
        "empty.dat": b"",
        "run.sh": b"#!/bin/sh\necho hello\n",
        # Incompressible, so it really is stored as several chunks.
        "nested/big.bin": random.Random(20261126).randbytes(BIG),
        "nested/notes.md": "# Notes\n\nnon-ASCII: \u00e9t\u00e9, \u65e5\u672c\n".encode(),
        "nested/deeper/leaf.txt": b"leaf\n" * 1000,
        "nested/deeper/\u00fcmlaut-name.txt": b"named in UTF-8\n",
    }
    os.makedirs(os.path.join(root, "nested", "deeper"))
    os.makedirs(os.path.join(root, "empty-dir"))
    for rel, content in files.items():
        with open(os.path.join(root, rel), "wb") as f:
            f.write(content)
    os.chmod(os.path.join(root, "run.sh"), 0o755)


def read_tree(root):
    """{relative path: bytes for a file, None for a directory}, below `root`."""
    tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for d in dirnames:
            tree[os.path.normpath(os.path.join(rel_dir, d))] = None
        for name in filenames:
            path = os.path.join(dirpath, name)
            assert not os.path.islink(path), path
            with open(path, "rb") as f:
                tree[os.path.normpath(os.path.join(rel_dir, name))] = f.read()
    return tree


def under(tree, prefix):
    """The part of `tree` below directory `prefix`, with paths relative to it."""
    cut = prefix.rstrip("/") + "/"
    return {k[len(cut) :]: v for k, v in tree.items() if k.startswith(cut)}


def with_prefix(tree, prefix):
    return {prefix: None, **{f"{prefix}/{k}": v for k, v in tree.items()}}


def assert_same_tree(got, want, what):
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert not missing and not extra, f"{what}: missing {missing}, unexpected {extra}"
    for path, content in want.items():
        if content is None:
            assert got[path] is None, f"{what}: {path} should be a directory"
        else:
            assert got[path] is not None, f"{what}: {path} should be a file"
            assert got[path] == content, (
                f"{what}: {path} differs ({len(got[path])} bytes, expected {len(content)})"
            )
    files = sum(v is not None for v in want.values())
    step(f"{what}: {files} files and {len(want) - files} directories identical, byte for byte")


def tar_tree(path):
    tree = {}
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            name = os.path.normpath(m.name)
            if m.isdir():
                tree[name] = None
            else:
                assert m.isfile(), f"{m.name}: unexpected tar member type {m.type!r}"
                tree[name] = tar.extractfile(m).read()
    return tree


def zip_tree(path):
    tree = {}
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None, "a zip member fails its CRC"
        for info in z.infolist():
            name = os.path.normpath(info.filename)
            tree[name] = None if info.is_dir() else z.read(info)
    return tree


# --- the API steps --------------------------------------------------------------------


def wait_for(client, job: JobDto, kind: JobKindDto) -> JobDto:
    assert job.kind == kind, job.kind
    deadline = time.monotonic() + 300
    while job.state in (JobStateDto.QUEUED, JobStateDto.RUNNING):
        assert time.monotonic() < deadline, f"job {job.id} still {job.state.value} after 300 s"
        time.sleep(0.2)
        job = expect(get_job.sync_detailed(job.id, client=client), 200, JobDto)
    assert job.state == JobStateDto.SUCCEEDED, (
        f"{kind.value} job {job.id} ended {job.state.value}: {job.error}"
    )
    return job


def download(client, snapshot_id, path, fmt, dest):
    """Streams an archive to `dest` through the generated client: the request comes from the
    generated `download_backup` (its URL and query), the body is read piece by piece
    (the generated `sync` would hold the whole archive in memory). Returns the
    Content-Disposition header."""
    kwargs = download_backup._get_kwargs(snapshot_id, path=path, format_=fmt)
    pieces = 0
    with client.get_httpx_client().stream(**kwargs) as resp:
        assert resp.status_code == 200, (
            f"download {path!r} as {fmt.value}: {resp.status_code} {resp.read()[:300]!r}"
        )
        assert resp.headers["content-type"].startswith("application/octet-stream"), resp.headers
        with open(dest, "wb") as f:
            for piece in resp.iter_bytes():
                f.write(piece)
                pieces += 1
        disposition = resp.headers["content-disposition"]
    assert disposition.startswith("attachment; filename=") and disposition.endswith(
        f'.{fmt.value}"'
    ), disposition
    return disposition, pieces


def main():
    base_url, data_dir, work = sys.argv[1:4]
    password = os.environ["COFFER_SDK_ADMIN_PASSWORD"]
    src = os.path.join(work, "source")
    make_source(src)
    source_tree = read_tree(src)
    files = {k: v for k, v in source_tree.items() if v is not None}

    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)
    health = expect(get_health.sync_detailed(client=anonymous), 200, Health)
    assert health.status == OverallStatus.OK, health
    step(f"health: {health.status.value}, version {health.version}")

    session = expect(
        login.sync_detailed(
            client=anonymous, body=LoginRequest(username="admin", password=password)
        ),
        200,
        LoginResponse,
    )
    assert session.token_type == "Bearer" and session.user.role == RoleName.ADMIN, session
    password_session = AuthenticatedClient(
        base_url=base_url, token=session.token, raise_on_unexpected_status=True, timeout=120
    )
    step("logged in as admin")

    # The rest runs with a personal access token only, as a CI job would.
    expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    created = expect(
        create_token.sync_detailed(
            client=password_session,
            body=CreateTokenRequest(name="sdk flow", expires_at=expires),
        ),
        201,
        CreatedTokenResponse,
    )
    assert created.token.startswith("coffer_pat_") and created.name == "sdk flow", created
    assert created.username == "admin" and created.last_used_at is UNSET, created
    client = AuthenticatedClient(
        base_url=base_url, token=created.token, raise_on_unexpected_status=True, timeout=120
    )
    me = expect(get_me.sync_detailed(client=client), 200, MeResponse)
    assert me.user.username == "admin" and "backup" in me.permissions, me
    assert me.token.id == created.id and me.token.name == "sdk flow", me
    step(f"token {created.id} created; the flow goes on with it only")

    source = expect(
        create_source.sync_detailed(
            client=client, body=CreateSourceRequest(name="sdk-flow", path=src)
        ),
        201,
        SourceDto,
    )
    assert source.name == "sdk-flow" and source.path == os.path.realpath(src), source
    step(f"source {source.id} over {source.path}")

    started = start_backup.sync_detailed(client=client, body=BackupBySourceName(source="sdk-flow"))
    job = expect(started, 202, JobDto)
    assert started.headers["location"] == f"/api/jobs/{job.id}", started.headers
    job = wait_for(client, job, JobKindDto.BACKUP)
    snap = job.result.snapshot_id
    assert job.snapshot_id == snap and job.result.files == len(files), job.result
    assert job.result.bytes_ == sum(len(v) for v in files.values()), job.result
    assert job.progress.files_done == len(files), job.progress
    step(f"backup job {job.id} succeeded: snapshot {snap[:12]}")

    log = expect(get_job_log.sync_detailed(job.id, client=client), 200, JobLogDto)
    assert log.complete and log.state == JobStateDto.SUCCEEDED, log
    assert [line.seq for line in log.lines] == list(range(1, len(log.lines) + 1)), log.lines
    assert log.lines[0].message.startswith("backup of `sdk-flow` started"), log.lines[0]
    assert log.lines[-1].message.startswith("succeeded after "), log.lines[-1]
    assert all(line.level == LogLevelDto.INFO for line in log.lines), log.lines
    tail = expect(get_job_log.sync_detailed(job.id, client=client, after=1, limit=1), 200, JobLogDto)
    assert [line.seq for line in tail.lines] == [2] and tail.next_after == 2 and not tail.complete
    step(f"its log: {len(log.lines)} lines, the last: {log.lines[-1].message[:60]}")

    page = expect(list_backups.sync_detailed(client=client, source_id=source.id), 200, BackupPage)
    assert page.total == 1 and [b.id for b in page.items] == [snap], page
    backup = expect(get_backup.sync_detailed(snap, client=client), 200, BackupDto)
    assert backup.source_id == source.id and backup.source_name == "sdk-flow", backup
    assert backup.status == "ok" and backup.warnings == [] and backup.encrypted, backup
    assert backup.checksum == snap and backup.file_count == len(files), backup
    assert backup.dir_count == len(source_tree) - len(files) + 1, backup  # and the root
    assert backup.size == sum(len(v) for v in files.values()), backup
    step(
        f"catalog: {backup.file_count} files, {backup.dir_count} directories, {backup.size} bytes, encrypted"
    )

    def browse(path):
        page = expect(browse_backup.sync_detailed(snap, client=client, path=path), 200, TreePage)
        assert page.snapshot_id == snap and page.path == path, page
        want = sorted(os.listdir(os.path.join(src, path)))
        assert sorted(e.name for e in page.items) == want and page.total == len(want), page
        for e in page.items:
            local = os.path.join(src, path, e.name)
            if os.path.isdir(local):
                assert e.type_ == EntryType.DIR, e
            else:
                assert e.type_ == EntryType.FILE and e.size == os.path.getsize(local), e
                assert stat.S_IMODE(e.mode) == stat.S_IMODE(os.stat(local).st_mode), e
        step(f"browse {path or '/'}: {', '.join(e.name for e in page.items)}")

    browse("")
    browse("nested")
    browse("nested/deeper")

    # One directory (the generated client's own call, archive in memory: it is small),
    # then the directory, one file and the whole snapshot streamed, as tar and as zip.
    resp = download_backup.sync_detailed(
        snap, client=client, path="nested/deeper", format_=ArchiveFormatDto.TAR
    )
    archive = expect(resp, 200, File)
    tar_path = os.path.join(work, "deeper.tar")
    with open(tar_path, "wb") as f:
        f.write(archive.payload.read())
    assert_same_tree(
        tar_tree(tar_path),
        with_prefix(under(source_tree, "nested/deeper"), "deeper"),
        "download nested/deeper (tar)",
    )
    for fmt, reader in ((ArchiveFormatDto.ZIP, zip_tree), (ArchiveFormatDto.TAR, tar_tree)):
        path = os.path.join(work, f"deeper-streamed.{fmt.value}")
        download(client, snap, "nested/deeper", fmt, path)
        assert_same_tree(
            reader(path),
            with_prefix(under(source_tree, "nested/deeper"), "deeper"),
            f"download nested/deeper streamed ({fmt.value})",
        )
    for fmt, reader in ((ArchiveFormatDto.TAR, tar_tree), (ArchiveFormatDto.ZIP, zip_tree)):
        path = os.path.join(work, f"big.{fmt.value}")
        download(client, snap, "nested/big.bin", fmt, path)
        assert_same_tree(
            reader(path),
            {"big.bin": files["nested/big.bin"]},
            f"download the file nested/big.bin ({fmt.value})",
        )
    for fmt, reader in ((ArchiveFormatDto.TAR, tar_tree), (ArchiveFormatDto.ZIP, zip_tree)):
        path = os.path.join(work, f"snapshot.{fmt.value}")
        disposition, pieces = download(client, snap, UNSET, fmt, path)
        assert_same_tree(
            reader(path),
            source_tree,
            f"download whole snapshot ({fmt.value}, {pieces} pieces streamed)",
        )

    # Restore everything to the default target, then one directory to a named target.
    job = expect(
        start_restore.sync_detailed(snap, client=client, body=RestoreRequest()), 202, JobDto
    )
    job = wait_for(client, job, JobKindDto.RESTORE)
    default_target = os.path.join(os.path.realpath(data_dir), "restored", snap)
    assert job.result.target == default_target, (job.result.target, default_target)
    assert job.result.files == len(files), job.result
    assert_same_tree(read_tree(default_target), source_tree, f"restore to {default_target}")
    for rel in files:
        want = stat.S_IMODE(os.stat(os.path.join(src, rel)).st_mode)
        got = stat.S_IMODE(os.stat(os.path.join(default_target, rel)).st_mode)
        assert got == want, f"restored {rel} has mode {oct(got)}, the source {oct(want)}"
    step("restored file modes match the source")

    job = expect(
        start_restore.sync_detailed(
            snap, client=client, body=RestoreRequest(path="nested", target="sdk-nested")
        ),
        202,
        JobDto,
    )
    job = wait_for(client, job, JobKindDto.RESTORE)
    named_target = os.path.join(os.path.realpath(data_dir), "restored", "sdk-nested")
    assert job.result.target == named_target, (job.result.target, named_target)
    assert_same_tree(
        read_tree(named_target), under(source_tree, "nested"), "restore nested to sdk-nested"
    )

    job = expect(start_verify.sync_detailed(snap, client=client, read_data=True), 202, JobDto)
    assert job.params.read_data is True, job.params
    job = wait_for(client, job, JobKindDto.VERIFY)
    assert job.result.ok is True and job.result.problems == [] and job.result.damaged_files == [], (
        job.result
    )
    # Stored (compressed, encrypted) bytes: at least the incompressible big file.
    assert job.result.bytes_read >= BIG, job.result
    backup = expect(get_backup.sync_detailed(snap, client=client), 200, BackupDto)
    assert backup.verify_result == "ok (data read)" and backup.verified_at, backup
    step(f"verify with read_data: ok, {job.result.bytes_read} bytes read and authenticated")

    # Reports: the history CSV names the snapshot, the audit CSV the restore, the PDF is
    # one (its text is checked by the Rust tests with pdftotext).
    resp = export_backups_csv.sync_detailed(client=client, source=str(source.id))
    assert resp.status_code == 200, (resp.status_code, resp.content[:300])
    rows = resp.content.decode().splitlines()
    assert rows[0].startswith("id,snapshot_id,"), rows[0]
    assert any(snap in row for row in rows[1:]), rows[:3]
    resp = export_audit_csv.sync_detailed(client=client, action="restore")
    assert resp.status_code == 200 and resp.content.count(b"\r\n") >= 3, resp.content[:300]
    resp = export_pdf.sync_detailed(client=client)
    assert resp.status_code == 200 and resp.content.startswith(b"%PDF-"), resp.content[:20]
    step(f"exports: {len(rows) - 1} snapshot rows, audit CSV, a {len(resp.content)}-byte PDF")

    # Settings and schedules through their typed models.
    settings = expect(get_settings.sync_detailed(client=client), 200, SettingsDto)
    assert settings.quota.from_ == OriginDto.FILE, settings
    changed = expect(
        update_settings.sync_detailed(
            client=client,
            body=UpdateSettingsRequest(
                quota=QuotaSettingDto(max_storage_mb=4096, warning_threshold_mb=3072)
            ),
        ),
        200,
        SettingsDto,
    )
    assert changed.quota.max_storage_mb == 4096 and changed.quota.from_ == OriginDto.DASHBOARD
    preview = expect(
        preview_schedule.sync_detailed(client=client, cron="30 3 * * 1-5"),
        200,
        SchedulePreviewDto,
    )
    assert preview.description == "at 03:30, on Monday to Friday (UTC)", preview.description
    assert len(preview.next_runs) == 5, preview
    step(f"settings: quota set to {changed.quota.max_storage_mb} MiB; schedule: {preview.description}")

    # The token's use is on record; revoked, it opens nothing.
    tokens = list_tokens.sync_detailed(client=client)
    assert tokens.status_code == 200, tokens.content[:300]
    (listed,) = [t for t in tokens.parsed if t.id == created.id]
    assert isinstance(listed, TokenDto) and listed.last_used_at is not UNSET, listed
    assert revoke_token.sync_detailed(created.id, client=password_session).status_code == 204
    refused = get_me.sync_detailed(client=client)
    assert refused.status_code == 401, refused.status_code
    step(f"token used from {listed.last_used_ip}, then revoked: 401")


if __name__ == "__main__":
    main()
    # A plain closing line for CI's summary: every step above is an assertion that held.
    print(f"sdk: {len(STEPS)} passed, 0 failed")
