"""Disk full and a read-only data folder, for real: the office's data folder lives on a small
tmpfs mounted for the test. The box must refuse writes with a clear message (503, JSON under
/api, a page elsewhere), keep serving reads, report the trouble on /healthz, and take writes
again once the storage is back.

Mounting needs root (CAP_SYS_ADMIN); where it is not permitted the tests skip and say so, and
``test_immutable_database_refuses_writes_and_keeps_reads`` (``chattr +i`` on the database file)
covers the read-only case instead.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import functools
import itertools
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from bs4 import BeautifulSoup

from tests.reliability.office import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    api_token,
    checkpoint,
    page_client,
    prepare,
)

_mobiles = itertools.count(87650000)
FULL_MESSAGE = "disk is full"
READ_ONLY_MESSAGE = "data folder is read-only"


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False)


@functools.cache
def mount_problem() -> str | None:
    """Why a filesystem cannot be mounted here (None when it can): tried once per run."""
    if shutil.which("mount") is None:
        return "no mount command"
    probe = Path(tempfile.mkdtemp(prefix="ctvms-mount-probe-"))
    try:
        done = _run("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe))
        if done.returncode != 0:
            return done.stderr.strip() or f"mount exited {done.returncode}"
        _run("umount", str(probe))
        return None
    finally:
        probe.rmdir()


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 16 MiB tmpfs mounted on a temporary folder, unmounted afterwards."""
    if problem := mount_problem():
        pytest.skip(f"mounting a filesystem is not permitted here: {problem}")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = _run("mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", str(mount_point))
    if done.returncode != 0:
        pytest.skip(f"mounting a filesystem is not permitted here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        _run("mount", "-o", "remount,rw", str(mount_point))
        if _run("umount", str(mount_point)).returncode != 0:
            _run("umount", "-l", str(mount_point))


def _fill(folder: Path) -> Path:
    """Write zeros into ``folder`` until the filesystem refuses; the filler file."""
    filler = folder / "filler.bin"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    # Small writes can still fit in the last partial page: take that too.
    with contextlib.suppress(OSError), open(filler, "ab", buffering=0) as out:
        while out.write(b"\0" * 512):
            pass
    return filler


def _new_customer(api: httpx.Client, name: str) -> httpx.Response:
    return api.post(
        "/api/v1/customers",
        json={
            "name": name,
            "mobile": f"55119{next(_mobiles)}",
            "house": "12",
            "area": "Centro",
            "confirm_duplicates": True,
        },
    )


def _health(base_url: str) -> tuple[int, str]:
    answer = httpx.get(base_url + "/healthz", timeout=10)
    return answer.status_code, answer.text


def _wait_health(base_url: str, expected: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while (seen := _health(base_url)) != (200, expected):
        assert time.monotonic() < deadline, f"/healthz said {seen}, not {expected!r}"
        time.sleep(0.05)


def _csrf(page: httpx.Response) -> str:
    import re

    found = re.search(r'name="_csrf_token" value="([^"]+)"', page.text)
    assert found, "no CSRF token on the page"
    return found.group(1)


def _assert_refused(api: httpx.Client, pages: httpx.Client, message: str) -> None:
    """A write through the API and one through a form are refused with ``message``."""
    refused = _new_customer(api, "Refused Through Api")
    assert refused.status_code == 503, refused.text
    body = refused.json()
    assert body["error"] == "storage_unavailable"
    assert message in body["message"]
    assert "Nothing was changed" in body["message"]

    form = pages.get("/customers/new")
    assert form.status_code == 200
    answer = pages.post(
        "/customers",
        data={
            "_csrf_token": _csrf(form),
            "name": "Refused Through Form",
            "mobile": "5511987659999",
            "house": "3",
            "area": "Centro",
        },
    )
    assert answer.status_code == 503, answer.text[:500]
    assert answer.headers["content-type"].startswith("text/html")
    assert message in answer.text


def _assert_reads_work(
    api: httpx.Client, pages: httpx.Client, customer_id: str, banner: str | None = None
) -> None:
    """Reads answer; the admin's pages carry the storage banner (``banner``) or none."""
    one = api.get(f"/api/v1/customers/{customer_id}")
    assert one.status_code == 200 and one.json()["name"] == "Stored Before"
    found = api.get("/api/v1/customers", params={"search": "stored before"})
    assert found.status_code == 200 and found.json()["total"] == 1
    page = pages.get("/customers", params={"q": "stored"})
    assert page.status_code == 200 and "Stored Before" in page.text
    dashboard = pages.get("/")
    assert dashboard.status_code == 200
    alert = BeautifulSoup(dashboard.text, "html.parser").select_one(".storage-alert")
    if banner is None:
        assert alert is None, alert.get_text()
    else:
        assert alert is not None and banner in alert.get_text(), "no storage banner"
    refused = api.get("/api/v1/customers", params={"search": "refused through"})
    assert refused.json()["total"] == 0, "a refused write left a row behind"


@pytest.fixture
def office_on(small_disk):
    """An office whose data folder is on the small disk, served by a real process."""
    server, _ = prepare(small_disk / "office")
    # Logs elsewhere: an open log file would keep the disk from being remounted read-only.
    server.log_path = small_disk.parent / "server.log"
    server.worker_log_path = small_disk.parent / "worker.log"
    with server:
        server.start()
        token = api_token(server.base_url, ADMIN_USERNAME, ADMIN_PASSWORD)
        api = httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        pages = page_client(server.base_url, ADMIN_USERNAME, ADMIN_PASSWORD)
        with api, contextlib.closing(pages):
            stored = _new_customer(api, "Stored Before")
            assert stored.status_code == 201, stored.text
            yield server, api, pages, stored.json()["id"]


def test_full_disk_refuses_writes_keeps_reads_and_recovers(office_on, small_disk):
    server, api, pages, customer_id = office_on
    _wait_health(server.base_url, "ok")
    database = server.data_dir / "ctvms.sqlite3"
    # Sessions last seen two minutes ago: reading now wants to touch them (a write).
    with contextlib.closing(sqlite3.connect(database, timeout=15)) as conn, conn:
        past = conn.execute("SELECT MIN(last_seen_at) FROM sessions").fetchone()[0]
        earlier = dt.datetime.fromisoformat(past) - dt.timedelta(minutes=2)
        conn.execute("UPDATE sessions SET last_seen_at = ?", (earlier.isoformat(sep=" "),))
    checkpoint(database)
    filler = _fill(small_disk)

    _assert_refused(api, pages, FULL_MESSAGE)
    _assert_reads_work(api, pages, customer_id, banner="The disk is full")
    _wait_health(server.base_url, "ok, storage full")

    filler.unlink()
    _wait_health(server.base_url, "ok")
    again = _new_customer(api, "Stored After")
    assert again.status_code == 201, again.text
    assert api.get("/api/v1/customers", params={"search": "stored after"}).json()["total"] == 1
    _assert_reads_work(api, pages, customer_id)
    assert "database is locked" not in server.log_tail(10_000)


def test_read_only_data_folder_refuses_writes_keeps_reads_and_recovers(office_on, small_disk):
    """Linux refuses to remount a filesystem read-only while files on it are open for writing
    (the kernel does it anyway after an I/O error, which a test cannot cause safely), so the
    box is restarted on the read-only folder: what an office sees after its SD card or disk
    went read-only and the box was rebooted."""
    server, api, pages, customer_id = office_on
    server.stop()
    done = _run("mount", "-o", "remount,ro", str(small_disk))
    assert done.returncode == 0, done.stderr
    try:
        server.start(port=server.port)
        _wait_health(server.base_url, "ok, storage read_only")
        _assert_refused(api, pages, READ_ONLY_MESSAGE)
        _assert_reads_work(api, pages, customer_id, banner="The data folder is read-only")
        server.stop()
    finally:
        server.stop()
        done = _run("mount", "-o", "remount,rw", str(small_disk))
    assert done.returncode == 0, done.stderr

    server.start(port=server.port)
    _wait_health(server.base_url, "ok")
    again = _new_customer(api, "Stored After")
    assert again.status_code == 201, again.text
    _assert_reads_work(api, pages, customer_id)


def test_immutable_database_refuses_writes_and_keeps_reads(tmp_path):
    """The fallback where no filesystem can be mounted: the database file made immutable
    (``chattr +i``, which stops root too, unlike a file mode)."""
    if mount_problem() is None:
        pytest.skip("a tmpfs can be mounted here, so the read-only data folder test covers this")
    server, _ = prepare(tmp_path / "office")
    database = server.data_dir / "ctvms.sqlite3"
    with server:
        server.start()
        token = api_token(server.base_url, ADMIN_USERNAME, ADMIN_PASSWORD)
        api = httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        pages = page_client(server.base_url, ADMIN_USERNAME, ADMIN_PASSWORD)
        with api, contextlib.closing(pages):
            stored = _new_customer(api, "Stored Before")
            assert stored.status_code == 201, stored.text
            server.stop()
            done = _run("chattr", "+i", str(database))
            if done.returncode != 0:
                pytest.skip(
                    "neither mounting a filesystem nor chattr +i is permitted here: "
                    f"{mount_problem()}; {done.stderr.strip()}"
                )
            try:
                server.start(port=server.port)
                _wait_health(server.base_url, "ok, storage read_only")
                _assert_refused(api, pages, READ_ONLY_MESSAGE)
                _assert_reads_work(
                    api, pages, stored.json()["id"], banner="The data folder is read-only"
                )
                server.stop()
            finally:
                _run("chattr", "-i", str(database))
            server.start(port=server.port)
            again = _new_customer(api, "Stored After")
            assert again.status_code == 201, again.text
