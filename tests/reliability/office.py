"""A real office for the reliability tests: a data folder, ``ctvms`` commands, a server process,
and an HTTP client logged in as its admin (a bearer token for the API, cookies for pages)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import httpx

from bench.server import ServerProcess

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "reliability-admin-pass-2026"


def prepare(data_dir: Path, *, customers: int = 0, env: dict[str, str] | None = None):
    """Migrate an office in ``data_dir`` with its admin (and ``customers`` demo customers);
    the server is not started. Returns the ServerProcess and the demo summary."""
    extra = {"CTVMS_OFFICE_CODE": "TS", "CTVMS_OFFICE_NAME": "Reliability Office"}
    extra.update(env or {})
    server = ServerProcess(data_dir, env=extra)
    server.ctvms("migrate")
    server.ctvms(
        "users", "create", "--role", "admin", "--username", ADMIN_USERNAME,
        input=ADMIN_PASSWORD + "\n",
    )  # fmt: skip
    summary: dict[str, str] = {}
    if customers:
        out = server.ctvms("demo", "--customers", str(customers), "--years", "1").stdout
        summary = dict(re.findall(r"^(\w+): (.*)$", out, flags=re.M))
    return server, summary


def api_token(base_url: str, username: str, password: str) -> str:
    answer = httpx.post(
        base_url + "/api/v1/auth/token",
        json={"username": username, "password": password},
        timeout=30,
    )
    answer.raise_for_status()
    return answer.json()["access_token"]


def page_client(base_url: str, username: str, password: str) -> httpx.Client:
    """An httpx client logged in through the login form (cookies and CSRF token kept)."""
    client = httpx.Client(base_url=base_url, timeout=30)
    page = client.get("/login")
    token = re.search(r'name="_csrf_token" value="([^"]+)"', page.text)
    assert token, "no CSRF token on /login"
    answer = client.post(
        "/login", data={"login": username, "password": password, "_csrf_token": token.group(1)}
    )
    assert answer.status_code == 303, answer.text[:500]
    return client


def checkpoint(database: Path) -> None:
    """Fold the WAL into the database file and empty it, so the next write must allocate."""
    with sqlite3.connect(database, timeout=15) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
