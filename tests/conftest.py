"""Fixtures shared by the whole suite.

Every test gets its own database: a copy of a SQLite file migrated once per session, or, with
``CTVMS_TEST_DB=postgres``, a PostgreSQL database cloned from a migrated template. Services are
called directly (async tests); pages and the API go through Litestar's in-process client.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from appliance import clock, db, i18n
from appliance.cli import migrate
from appliance.jobs.queue import configure_queue
from appliance.settings import Settings

PG_URL = os.environ.get("CTVMS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
USE_PG = os.environ.get("CTVMS_TEST_DB", "sqlite") == "postgres"
SECRET = "test-secret-key-" + "x" * 32


def make_settings(data_dir: Path, **overrides) -> Settings:
    values = dict(
        data_dir=data_dir,
        locale="en",
        secret_key=SECRET,
        office_code="TS",
        office_name="Test Office",
        smtp_host="",
        timezone="America/Sao_Paulo",
    )
    values.update(overrides)
    return Settings.from_env({}, **values)


def run(coro):
    """Run a coroutine from a synchronous test (seeding data for page tests)."""

    async def main():
        try:
            return await coro
        finally:
            eng = db.engine()
            if isinstance(eng, db.ApplianceSQLiteEngine):
                await eng.close_idle()

    return asyncio.run(main())


async def _migrate(settings: Settings) -> None:
    db.configure(settings)
    try:
        await migrate(settings)
    finally:
        eng = db.engine()
        if isinstance(eng, db.ApplianceSQLiteEngine):
            await eng.close_idle()


# -- PostgreSQL -------------------------------------------------------------------------------


def pg_available() -> bool:
    import asyncpg

    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(PG_URL, timeout=3)
        except (OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


def require_pg() -> None:
    if not pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL does not answer at {PG_URL}, and CI needs it")
        pytest.skip(f"PostgreSQL does not answer at {PG_URL} (set CI=1 to make this fail)")


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_url_for(name: str) -> str:
    return PG_URL.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(autouse=True)
def _english_by_default():
    """Tests read messages in English (their settings say CTVMS_LOCALE=en); a test that set up
    a Portuguese office does not leave its language to the next one."""
    i18n.set_default_locale("en")
    yield
    i18n.set_default_locale("en")


@pytest.fixture
async def _close_sqlite_connections():
    """Pooled SQLite connections of a test's event loop are closed with it: each holds a
    thread that would otherwise keep pytest from exiting after the last test."""
    yield
    eng = db._engine
    if isinstance(eng, db.ApplianceSQLiteEngine):
        await eng.close_idle()


def pytest_collection_modifyitems(items):
    # Only coroutine tests have a loop of their own to clean up; an async fixture on the others
    # would start a loop beside Playwright's (the browser tests) and fail.
    for item in items:
        if inspect.iscoroutinefunction(getattr(item, "obj", None)):
            item.fixturenames.append("_close_sqlite_connections")


@pytest.fixture(scope="session")
def pg_template(tmp_path_factory) -> Iterator[str]:
    """A PostgreSQL database migrated once, to clone per test."""
    require_pg()
    name = f"ctvms_tpl_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    settings = make_settings(tmp_path_factory.mktemp("pgtpl"), database_url=pg_url_for(name))
    asyncio.run(_migrate(settings))
    yield name
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_settings(tmp_path, pg_template) -> Iterator[Settings]:
    name = f"ctvms_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    data = tmp_path / "pgdata"
    data.mkdir()
    settings = make_settings(data, database_url=pg_url_for(name))
    db.configure(settings)
    configure_queue(settings, immediate=True)
    yield settings
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# -- SQLite -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("template")
    settings = make_settings(folder)
    asyncio.run(_migrate(settings))
    path = settings.sqlite_path
    # Fold the WAL into the main file so a plain copy carries everything.
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture
def settings(request, tmp_path) -> Iterator[Settings]:
    """Settings of a fresh, migrated office database (SQLite, or PostgreSQL if chosen)."""
    clock.reset()
    if USE_PG:
        yield request.getfixturevalue("pg_settings")
        clock.reset()
        return
    template = request.getfixturevalue("sqlite_template")
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(template, data / "ctvms.sqlite3")
    settings = make_settings(data)
    db.configure(settings)
    configure_queue(settings, immediate=True)
    yield settings
    clock.reset()


@pytest.fixture
def app(settings):
    from appliance.web.app import create_app

    return create_app(settings, queue=False)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture
def client2(app) -> Iterator[TestClient]:
    """A second browser: another device of the same or another user."""
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c
