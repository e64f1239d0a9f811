"""Sync fixtures: a central instance served by a real ``ctvms serve`` process on PostgreSQL, and
office boxes as SQLite data folders driven in this process against central's real HTTP port.

Only one database is bound at a time in this process (``appliance.db.configure``), so a test
switches with ``await node.use()`` before calling services of that node.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance import db
from appliance.settings import Settings
from bench.server import ServerProcess
from tests.conftest import SECRET, _pg_admin, make_settings, pg_url_for

_current: list[Any] = []


class Node:
    """One node's settings; ``use()`` points this process's tables at its database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def use(self) -> Node:
        if _current and _current[0] is not self:
            eng = db.engine()
            if isinstance(eng, db.ApplianceSQLiteEngine):
                await eng.close_idle()
        db.configure(self.settings)
        _current[:] = [self]
        return self


class Central(Node):
    def __init__(self, settings: Settings, server: ServerProcess, db_name: str) -> None:
        super().__init__(settings)
        self.server = server
        self.db_name = db_name

    @property
    def url(self) -> str:
        return self.server.base_url

    async def new_office(self, code: str, name: str = "") -> str:
        from appliance.sync import central

        await self.use()
        office = await central.create_office(code, name or f"Office {code}")
        return office["enroll_code"]

    def kill(self) -> None:
        assert self.server.process is not None
        self.server.process.kill()
        self.server.process.wait(timeout=10)

    def restart(self) -> None:
        self.server.start(port=self.server.port)


class Box(Node):
    def __init__(self, settings: Settings, name: str) -> None:
        super().__init__(settings)
        self.name = name

    async def sync(self, **kwargs: Any) -> dict[str, Any]:
        from appliance.sync import client

        await self.use()
        return await client.sync_once(**kwargs)

    def env(self) -> dict[str, str]:
        return {
            "CTVMS_DATA_DIR": str(self.settings.data_dir),
            "CTVMS_OFFICE_CODE": self.settings.office_code,
            "CTVMS_SECRET_KEY": SECRET,
            "CTVMS_ADVERTISE": "off",
            "CTVMS_LOCALE": "en",
        }


def _start_central(folder: Path, pg_template: str) -> Central:
    name = f"ctvms_central_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    data = folder / "central"
    url = pg_url_for(name)
    env = {
        "CTVMS_ROLE": "central",
        "CTVMS_DATABASE_URL": url,
        "CTVMS_SECRET_KEY": SECRET,
        "CTVMS_OFFICE_CODE": "HQ",
        "CTVMS_ADVERTISE": "off",
    }
    server = ServerProcess(data, env=env)
    settings = make_settings(data, database_url=url, role="central", office_code="HQ")
    node = Central(settings, server, name)
    asyncio.run(_set_central_identity(node))
    server.start()
    return node


def _stop_central(node: Central) -> None:
    node.server.stop()
    _current.clear()
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{node.db_name}" WITH (FORCE)'))


@pytest.fixture
def central(tmp_path, pg_template) -> Iterator[Central]:
    node = _start_central(tmp_path, pg_template)
    yield node
    _stop_central(node)


@pytest.fixture(scope="module")
def shared_central(tmp_path_factory, pg_template) -> Iterator[Central]:
    """One central for a whole module: its tests use offices of their own (``new_code()``)."""
    node = _start_central(tmp_path_factory.mktemp("central"), pg_template)
    yield node
    _stop_central(node)


def new_code() -> str:
    """An office code no other test of the session uses."""
    return "Q" + uuid.uuid4().hex[:5].upper()


async def _set_central_identity(node: Central) -> None:
    from appliance.sync.state import update_state

    await node.use()
    # Databases cloned from one template share the node id the migration drew.
    await update_state(node_id=uuid.uuid4())


@pytest.fixture
def make_box(tmp_path, sqlite_template):
    """``await make_box(central, "AA")``: a fresh office box enrolled at ``central``."""
    made: list[Box] = []

    async def build(central: Central, office: str, *, enroll: bool = True) -> Box:
        data = tmp_path / f"box-{office}-{len(made)}"
        data.mkdir()
        shutil.copy(sqlite_template, data / "ctvms.sqlite3")
        box = Box(make_settings(data, office_code=office), office)
        made.append(box)
        if enroll:
            code = await central.new_office(office)
            await enroll_box(box, central, code)
        return box

    yield build
    _current.clear()


async def enroll_box(box: Box, central: Central, code: str) -> dict[str, Any]:
    from appliance.sync import client

    await box.use()
    return await client.enroll(box.settings, central_url=central.url, code=code)


def box_headers(node_id: str, secret: str) -> dict[str, str]:
    return {"X-Ctvms-Box": f"{node_id}:{secret}"}


def post(url: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/sync/{path}", json=body, headers=headers, timeout=30)


def data_path(box: Box) -> Path:
    return box.settings.sqlite_path
