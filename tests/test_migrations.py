"""Migrations build the whole schema on a fresh SQLite file and a fresh PostgreSQL database,
and the SQLite connections get WAL, foreign keys, a busy timeout and synchronous=FULL."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import uuid

import pytest

from appliance import clock, db
from appliance.cli import migrate
from appliance.tables import ALL_TABLES
from tests.conftest import _pg_admin, make_settings, pg_url_for, require_pg

EXPECTED = {t._meta.tablename for t in ALL_TABLES} | {"migration"}


def _columns_by_table() -> dict[str, set[str]]:
    return {
        t._meta.tablename: {c._meta.db_column_name for c in t._meta.columns} for t in ALL_TABLES
    }


async def _migrate_and_close(settings) -> None:
    db.configure(settings)
    try:
        await migrate(settings)
    finally:
        eng = db.engine()
        if isinstance(eng, db.ApplianceSQLiteEngine):
            await eng.close_idle()


def _applied_sqlite(path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM migration ORDER BY id")]


def test_fresh_sqlite_file_gets_every_table_and_wal(tmp_path):
    settings = make_settings(tmp_path / "data")
    assert not settings.sqlite_path.exists()
    asyncio.run(_migrate_and_close(settings))
    with sqlite3.connect(settings.sqlite_path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables >= EXPECTED
        # WAL is a property of the file: a plain connection sees it too.
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        for table, columns in _columns_by_table().items():
            found = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            assert columns <= found, f"{table} lacks {columns - found}: a migration is missing"
        indexes = {r[1] for r in conn.execute("PRAGMA index_list(connections)")}
        assert "connections_customer_service" in indexes
    applied = _applied_sqlite(settings.sqlite_path)
    assert applied and len(applied) == len(set(applied))

    # A second run (the second `make run`) applies nothing and loses nothing.
    with sqlite3.connect(settings.sqlite_path) as conn:
        conn.execute("INSERT INTO crf_counters (office_code, last) VALUES ('KEEP', 7)")
    asyncio.run(_migrate_and_close(settings))
    assert _applied_sqlite(settings.sqlite_path) == applied
    with sqlite3.connect(settings.sqlite_path) as conn:
        assert conn.execute("SELECT last FROM crf_counters").fetchone()[0] == 7


async def test_engine_connections_have_foreign_keys_full_sync_and_busy_timeout(settings):
    if not settings.is_sqlite:
        pytest.skip("SQLite pragmas")
    eng = db.engine()
    assert isinstance(eng, db.ApplianceSQLiteEngine)
    conn = await eng.get_connection()
    try:
        pragmas = {}
        for name in ("foreign_keys", "synchronous", "busy_timeout", "journal_mode"):
            async with conn.execute(f"PRAGMA {name}") as cur:
                pragmas[name] = next(iter((await cur.fetchone()).values()))
    finally:
        await conn.close()
    assert pragmas["foreign_keys"] == 1
    assert pragmas["synchronous"] == 2  # FULL
    assert pragmas["busy_timeout"] >= 5000
    assert pragmas["journal_mode"] == "wal"


async def test_pooled_statements_enforce_foreign_keys(settings):
    """Statements outside a transaction run on pooled connections: they get the pragmas too."""
    from appliance.customers.tables import Connection

    with pytest.raises(Exception, match=r"(?i)foreign key"):
        await Connection.raw(
            "INSERT INTO connections (id, customer, service, plan, device_id, registered_on, "
            "status, created_at, updated_at) VALUES ({}, {}, 'cable', {}, '', '2026-01-01', "
            "'active', '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')",
            db.new_id(),
            db.new_id(),
            db.new_id(),
        )


async def test_write_transaction_begins_immediate_and_rolls_back(settings):
    from appliance.customers.tables import CrfCounter

    with pytest.raises(RuntimeError):
        async with db.write_transaction():
            await CrfCounter(office_code="RB", last=1).save()
            raise RuntimeError("boom")
    assert not await CrfCounter.exists().where(CrfCounter.office_code == "RB")
    async with db.write_transaction():
        await CrfCounter(office_code="OK", last=1).save()
        # Nested use joins the outer transaction.
        async with db.write_transaction():
            await CrfCounter.update({CrfCounter.last: 2}).where(CrfCounter.office_code == "OK")
    assert (await CrfCounter.select().where(CrfCounter.office_code == "OK"))[0]["last"] == 2


def test_ids_are_uuid7_and_time_ordered():
    ids = [db.new_id() for _ in range(200)]
    assert all(isinstance(i, uuid.UUID) and i.version == 7 for i in ids)
    assert ids == sorted(ids)


@pytest.mark.postgres
def test_fresh_postgresql_database_gets_every_table(tmp_path):
    require_pg()
    import asyncpg

    name = f"ctvms_mig_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        settings = make_settings(tmp_path / "data", database_url=pg_url_for(name))
        asyncio.run(_migrate_and_close(settings))

        async def inspect():
            conn = await asyncpg.connect(pg_url_for(name))
            try:
                rows = await conn.fetch(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = 'public'"
                )
                applied = [r["name"] for r in await conn.fetch("SELECT name FROM migration")]
                index = await conn.fetchval(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = "
                    "'connections_customer_service'"
                )
                return rows, applied, index
            finally:
                await conn.close()

        rows, applied, index = asyncio.run(inspect())
        found: dict[str, set[str]] = {}
        for r in rows:
            found.setdefault(r["table_name"], set()).add(r["column_name"])
        assert set(found) >= EXPECTED
        for table, columns in _columns_by_table().items():
            assert columns <= found[table], f"{table} lacks {columns - found[table]}"
        assert index and "UNIQUE" in index
        # Applying again changes nothing.
        asyncio.run(_migrate_and_close(settings))
        assert asyncio.run(inspect())[1] == applied
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.mark.postgres
async def test_services_run_on_postgresql(pg_settings):
    """The same service code works on the central engine (money sums, dates, search)."""
    from appliance.customers import service as customers
    from tests.helpers import make_customer, make_plan

    # The office day is pinned inside the paid month, so the status does not depend on the
    # real date (paid until 4 February covers January: active through 31 January).
    clock.reset()
    clock.shift(dt.datetime(2026, 1, 20, 12, tzinfo=pg_settings.tz) - clock.now())
    try:
        plan = await make_plan(service="broadband", monthly_price="89,90")
        customer = await make_customer(
            pg_settings,
            name="Conceição Araújo",
            broadband_plan=str(plan["id"]),
            broadband_registered_on="2026-01-05",
            broadband_expires_on="2026-02-04",
        )
        found = await customers.search_customers("conceicao ARAUJO")
        assert [r["id"] for r in found.rows] == [customer["id"]]
        broadband = customer["connections"]["broadband"]
        assert (broadband["plan_price"], broadband["expires_on"]) == (8990, dt.date(2026, 1, 31))
        counts = await customers.connection_counts()
        assert counts["broadband"]["active"] == 1
    finally:
        clock.reset()
