"""The SQLite engine's connection reuse: single statements and transactions share a small idle
list, and a connection comes back to it only in a state the next user can rely on."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from appliance import db
from appliance.billing import sql
from appliance.plans.tables import Plan
from tests.conftest import USE_PG

pytestmark = pytest.mark.skipif(USE_PG, reason="the connection pool is the SQLite engine's")


def _idle() -> list:
    eng = db.engine()
    assert isinstance(eng, db.ApplianceSQLiteEngine)
    return eng._idle.setdefault(id(asyncio.get_running_loop()), [])


async def test_a_transaction_reuses_an_idle_connection_and_gives_it_back(settings):
    await Plan.count()  # leaves one connection idle
    (first,) = _idle()
    async with db.write_transaction() as tx:
        assert tx.connection is first
        assert _idle() == []
        await Plan.count()  # inside the transaction: its own connection, not a new one
        assert _idle() == []
    assert _idle() == [first]


async def test_a_failed_statement_in_a_transaction_closes_its_connection(settings):
    await Plan.count()
    (first,) = _idle()
    with pytest.raises(sqlite3.OperationalError):
        async with db.write_transaction():
            await Plan.raw("SELECT * FROM no_such_table")
    assert first not in _idle()
    assert await Plan.count() == 0  # a fresh connection serves the next statement


async def test_a_refused_change_rolls_back_and_the_connection_is_reused_clean(settings):
    await Plan.count()
    (first,) = _idle()

    class Refused(Exception):
        pass

    with pytest.raises(Refused):
        async with db.write_transaction():
            await Plan.raw(
                "INSERT INTO plans (id, service, name, monthly_price, description, "
                "created_at, updated_at) VALUES ({}, 'cable', 'Half-made', 100, '', {}, {})",
                db.new_id(),
                "2026-01-01T00:00:00+00:00",
                "2026-01-01T00:00:00+00:00",
            )
            assert await Plan.count() == 1
            raise Refused
    assert _idle() == [first]
    assert await Plan.count() == 0  # the insert was rolled back
    # The connection is not left inside a transaction: a new one begins on it.
    async with db.write_transaction() as tx:
        assert tx.connection is first


async def test_a_connection_given_a_bulk_page_cache_is_not_reused(settings):
    async with db.write_transaction() as tx:
        await sql.bulk_cache()
        bulk = tx.connection
    assert bulk not in _idle()


async def test_a_begin_that_waits_out_the_lock_closes_its_connection(settings, monkeypatch):
    monkeypatch.setattr(db, "BUSY_TIMEOUT_S", 0.1)
    db.configure(settings)  # an engine with the short timeout, nothing idle yet
    other = sqlite3.connect(settings.sqlite_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            async with db.write_transaction():
                pass
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert _idle() == []
    async with db.write_transaction():
        assert await Plan.count() == 0
