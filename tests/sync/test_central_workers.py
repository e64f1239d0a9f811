"""Central scaled out: ``ctvms serve --workers 2`` on PostgreSQL with the job queue on Redis.

A session made by one worker process is honoured by the other (sessions live in the database),
which is checked by finding, for each connection, the worker process that holds its socket; two
boxes push through it at the same time without an error."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.billing.tables import Payment
from appliance.sync.state import pending_count
from bench.runner import log_in
from bench.server import HOST, ServerProcess, ctvms_command, server_env
from tests.billing.conftest import pay, subscriber
from tests.conftest import SECRET, _pg_admin, make_settings, pg_url_for
from tests.helpers import make_plan
from tests.sync.conftest import Central, _set_central_identity

REDIS_URL = "redis://127.0.0.1:6379/7"  # a database of this test's own
WORKERS = 2


def _redis():
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            pytest.fail(f"Redis does not answer at {REDIS_URL}, and CI needs it")
        pytest.skip(f"Redis does not answer at {REDIS_URL} (set CI=1 to make this fail)")
    return client


@pytest.fixture
def central_workers(tmp_path, pg_template) -> Iterator[Central]:
    redis = _redis()
    name = f"ctvms_central_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    data = tmp_path / "central"
    url = pg_url_for(name)
    env = {
        "CTVMS_ROLE": "central",
        "CTVMS_DATABASE_URL": url,
        "CTVMS_REDIS_URL": REDIS_URL,
        "CTVMS_SECRET_KEY": SECRET,
        "CTVMS_OFFICE_CODE": "HQ",
        "CTVMS_ADVERTISE": "off",
    }
    server = ServerProcess(data, env=env)
    node = Central(
        make_settings(data, database_url=url, role="central", office_code="HQ"), server, name
    )
    asyncio.run(_set_central_identity(node))
    server.start(args=("--workers", str(WORKERS)), ready_within=60)
    try:
        yield node
    finally:
        server.stop()
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        redis.flushdb()


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid and b"spawn_main" in cmdline:
            kids.append(int(entry.name))
    return kids


def _wait_for_workers(pid: int) -> list[int]:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if len(kids := _children(pid)) >= WORKERS:
            return kids
        time.sleep(0.1)
    raise AssertionError(f"{WORKERS} worker processes did not start: {_children(pid)}")


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _server_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the server's end of the loopback connection from ``client_port``."""
    want_local, want_remote = f"{server_port:04X}", f"{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
        if local == want_local and remote == want_remote:
            return fields[9]
    return None


def _get(sock: socket.socket, path: str, cookie: str) -> int:
    """One keep-alive GET on ``sock``; its status (the body is read and dropped)."""
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nCookie: {cookie}\r\n\r\n"
    sock.sendall(request.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, _sep, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if length:
        while len(body) < int(length.group(1)):
            body += sock.recv(65536)
    elif re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
        while not body.endswith(b"0\r\n\r\n"):
            body += sock.recv(65536)
    return int(head.split(b" ", 2)[1])


def test_sessions_hold_across_two_worker_processes(central_workers):
    server = central_workers.server
    password = secrets.token_urlsafe(12)
    server.ctvms("users", "create", "--role", "owner", "--username", "owner", input=password + "\n")
    assert server.process is not None
    workers = _wait_for_workers(server.process.pid)
    cookies = log_in(server, "owner", password)  # the session is made by one of the workers
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())

    served: dict[int, int] = {pid: 0 for pid in workers}
    held: list[socket.socket] = []
    try:
        # New connections until each worker has served the owner's session (bounded); every
        # connection stays open so the worker holding its socket can be found.
        for _ in range(200):
            sock = socket.create_connection((HOST, server.port), timeout=10)
            held.append(sock)
            assert _get(sock, "/", cookie) == 200, "the session was not honoured"
            inode = _server_inode(server.port, sock.getsockname()[1])
            owner = [pid for pid in workers if inode and inode in _socket_inodes(pid)]
            assert len(owner) == 1
            served[owner[0]] += 1
            if all(served.values()) and sum(served.values()) >= 20:
                break
        assert all(served.values()), f"one worker served every connection: {served}"
        # Each connection keeps its session on later requests too.
        for sock in held:
            assert _get(sock, "/", cookie) == 200
        anonymous = socket.create_connection((HOST, server.port), timeout=10)
        held.append(anonymous)
        assert _get(anonymous, "/", "") in (302, 303)
    finally:
        for sock in held:
            sock.close()


async def _office_box(
    central: Central, make_box, code: str, payments: int
) -> tuple[object, list[str]]:
    box = await make_box(central, code)
    plans = {"cable": await make_plan(service="cable", monthly_price="100.00")}
    numbers = []
    for n in range(payments):
        customer = await subscriber(box.settings, plans, cable="2026-12-01", name=f"{code} {n}")
        numbers.append((await pay(box.settings, customer, "100.00"))["number"])
    return box, numbers


async def test_two_boxes_push_through_two_workers_at_once(central_workers, make_box):
    central = central_workers
    a, a_numbers = await _office_box(central, make_box, "AA", 30)
    b, b_numbers = await _office_box(central, make_box, "BB", 30)

    runs = [
        subprocess.Popen(
            [*ctvms_command(), "sync", "once"],
            env=server_env(box.settings.data_dir, box.env()),
            cwd=box.settings.data_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for box in (a, b)
    ]
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        summary = json.loads(out)
        assert summary["pushed"] > 0 and summary["dead_letters"] == 0

    for box in (a, b):
        await box.use()
        assert await pending_count() == 0
    await central.use()
    numbers = {
        r["number"] for r in await Payment.select(Payment.number).where(Payment.office_code != "")
    }
    assert set(a_numbers) | set(b_numbers) <= numbers
    assert all(re.fullmatch(r"(AA|BB)-\d{4}-\d{6}", n) for n in a_numbers + b_numbers)
