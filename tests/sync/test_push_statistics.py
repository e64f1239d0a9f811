"""A new central's empty payment tables get statistics once a box pushes its backlog, so the
plans PostgreSQL caches (foreign-key checks among them) stop being sequential scans."""

from __future__ import annotations

from appliance.jobs.queue import configure_queue
from appliance.sync.tables import SyncChange
from tests.billing.conftest import pay, subscriber
from tests.helpers import make_plan
from tests.sync.conftest import new_code


async def _statistics(table: str) -> float:
    rows = await SyncChange.raw("SELECT reltuples FROM pg_class WHERE relname = {}", table)
    return float(rows[0]["reltuples"])


async def _analyze_count(table: str) -> int:
    rows = await SyncChange.raw(
        "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = {}", table
    )
    return int(rows[0]["analyze_count"])


async def test_a_backlog_pushed_to_an_empty_central_is_analyzed(central, make_box):
    await central.use()
    for table in ("billing_payments", "billing_allocations"):
        # Only this push may analyze them (not autovacuum, whatever the timing).
        await SyncChange.raw(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        await SyncChange.raw(f"ANALYZE {table}")
        assert await _statistics(table) == 0  # analyzed empty: what a new central looks like
    plans_analyzed = await _analyze_count("plans")
    box = await make_box(central, new_code())
    await box.use()
    plan = await make_plan(service="cable", monthly_price="100.00")
    customers = [
        await subscriber(box.settings, {"cable": plan}, cable="2026-12-01") for _ in range(110)
    ]
    await box.sync()
    # A queue nobody works: the invoice PDFs wait instead of being rendered inline.
    configure_queue(box.settings)
    try:
        for customer in customers:
            await pay(box.settings, customer, "100.00")
    finally:
        configure_queue(box.settings, immediate=True)
    # One batch holding all 110 payments: more rows than the statistics know by over 100.
    summary = await box.sync(batch=1000)
    assert summary["dead_letters"] == 0
    await central.use()
    payments = await SyncChange.raw("SELECT count(*) AS n FROM billing_payments")
    assert int(payments[0]["n"]) == 110
    assert await _statistics("billing_payments") >= 100
    assert await _statistics("billing_allocations") >= 100
    # A table the push wrote to but did not outgrow (one plan) is left alone.
    assert await _analyze_count("plans") == plans_analyzed
