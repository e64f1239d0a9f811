"""The status updater's boundaries, on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance import clock
from appliance.customers.status import status_on, update_statuses
from appliance.customers.tables import Connection
from tests.helpers import make_customer, make_plan
from tests.jobs.conftest import set_connection

TODAY = dt.date(2027, 3, 15)

# (expires_on, registered_on, expected status on TODAY)
CASES = {
    "expires today": (TODAY, dt.date(2020, 1, 1), "active"),
    "expired yesterday": (TODAY - dt.timedelta(days=1), dt.date(2020, 1, 1), "inactive"),
    "expired 60 days ago": (TODAY - dt.timedelta(days=60), dt.date(2020, 1, 1), "inactive"),
    "expired 61 days ago": (TODAY - dt.timedelta(days=61), dt.date(2020, 1, 1), "suspended"),
    "far future": (dt.date(2099, 12, 31), dt.date(2020, 1, 1), "active"),
    "never paid, registered today": (None, TODAY, "inactive"),
    "never paid, registered tomorrow": (None, TODAY + dt.timedelta(days=1), "active"),
    "never paid, registered 59 days ago": (None, TODAY - dt.timedelta(days=59), "inactive"),
    "never paid, registered 60 days ago": (None, TODAY - dt.timedelta(days=60), "suspended"),
}


async def _seed(settings, wrong_status: str) -> dict[str, object]:
    """One connection per case, each starting with a status it should not keep."""
    plan = await make_plan()
    ids = {}
    for label, (expires, registered, _expected) in CASES.items():
        customer = await make_customer(
            settings,
            cable_plan=str(plan["id"]),
            cable_registered_on=registered.isoformat(),
            cable_expires_on=expires.isoformat() if expires else "",
            cable_status=wrong_status,
        )
        ids[label] = customer["connections"]["cable"]["id"]
        await set_connection(
            ids[label], expires_on=expires, registered_on=registered, status=wrong_status
        )
    return ids


async def _statuses(ids) -> dict[str, str]:
    rows = await Connection.select(Connection.id, Connection.status)
    by_id = {r["id"]: r["status"] for r in rows}
    return {label: by_id[i] for label, i in ids.items()}


def test_python_rule_matches_the_table():
    for label, (expires, registered, expected) in CASES.items():
        assert status_on(expires, registered, TODAY) == expected, label


async def _check_boundaries(settings):
    clock.reset()
    ids = await _seed(settings, "suspended")
    summary = await update_statuses(settings, today=TODAY)
    expected = {label: case[2] for label, case in CASES.items()}
    assert await _statuses(ids) == expected
    changed = [e for e in expected.values() if e != "suspended"]
    assert summary["active"] == changed.count("active")
    assert summary["inactive"] == changed.count("inactive")
    assert summary["suspended"] == 0
    # Idempotent: a second run the same day changes nothing.
    again = await update_statuses(settings, today=TODAY)
    assert (again["active"], again["inactive"], again["suspended"]) == (0, 0, 0)
    # Late run: the box was off for a day; the result is that of the later day.
    later = TODAY + dt.timedelta(days=1)
    await update_statuses(settings, today=later)
    got = await _statuses(ids)
    for label, (expires, registered, _e) in CASES.items():
        assert got[label] == status_on(expires, registered, later), label


async def test_boundaries_on_sqlite_or_configured_db(settings):
    await _check_boundaries(settings)


async def test_boundaries_on_postgresql(pg_settings):
    await _check_boundaries(pg_settings)


async def test_only_given_connections(settings):
    ids = await _seed(settings, "active")
    one = ids["expired 61 days ago"]
    summary = await update_statuses(settings, today=TODAY, connection_ids=[one])
    assert summary["suspended"] == 1
    got = await _statuses(ids)
    assert got["expired 61 days ago"] == "suspended"
    assert got["expired yesterday"] == "active"  # untouched


@pytest.mark.parametrize("wrong", ["active", "inactive"])
async def test_counts_only_what_changed(settings, wrong):
    ids = await _seed(settings, wrong)
    summary = await update_statuses(settings, today=TODAY)
    expected = [c[2] for c in CASES.values()]
    for status in ("active", "inactive", "suspended"):
        should = 0 if status == wrong else expected.count(status)
        assert summary[status] == should
    assert len(ids) == len(CASES)


async def _logged_connection_changes() -> int:
    from appliance.sync.tables import SyncChange

    return await SyncChange.count().where(SyncChange.table_name == "connections")


async def _office_run_logs_nothing_for_sync(settings):
    ids = await _seed(settings, "active")
    before = await _logged_connection_changes()
    summary = await update_statuses(settings, today=TODAY)
    assert summary["inactive"] + summary["suspended"] > 0
    assert await _statuses(ids) == {label: case[2] for label, case in CASES.items()}
    # Every node derives the same statuses itself: nothing to send.
    assert await _logged_connection_changes() == before
    # A status set for the connections a payment touched travels with the payment.
    await set_connection(ids["expired yesterday"], status="active")
    await update_statuses(settings, today=TODAY, connection_ids=[ids["expired yesterday"]])
    assert await _logged_connection_changes() == before + 2  # the test's edit and the status


async def test_the_office_run_logs_nothing_for_sync(settings):
    await _office_run_logs_nothing_for_sync(settings)


async def test_the_office_run_logs_nothing_for_sync_on_postgresql(pg_settings):
    await _office_run_logs_nothing_for_sync(pg_settings)
