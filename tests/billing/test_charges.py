"""Monthly charges: the year updater, monthly billing, suspension, plan changes, new customers."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest

from appliance.billing import service as billing
from appliance.billing.tables import Charge
from appliance.customers import service as customers
from appliance.customers.tables import Connection
from tests.billing.conftest import set_today, subscriber
from tests.conftest import USE_PG
from tests.helpers import SYSTEM


async def grid(customer, year, service="cable"):
    return [
        (c["month"], c["state"], c["amount"])
        for c in (await billing.year_grid(customer["id"], year))[service]
    ]


async def test_a_new_customer_gets_the_remaining_months_of_the_year_at_once(settings, plans):
    set_today(settings, "2026-06-15")
    c = await subscriber(settings, plans, cable="2026-06-10")
    cells = await grid(c, 2026)
    assert [s for _, s, _ in cells[:5]] == ["none"] * 5
    assert cells[5] == (6, "unpaid", 10000)  # the current month is billed on registration
    assert [s for _, s, _ in cells[6:]] == ["scheduled"] * 6
    account = await billing.account(c["id"])
    assert account["due"] == 10000
    assert account["pending_months"] == [(2026, 6)]
    conn = (await customers.get_customer(c["id"]))["connections"]["cable"]
    # Nothing paid yet: paid up to the day before the first month, so it owes from day one.
    assert conn["expires_on"] == dt.date(2026, 5, 31)
    assert conn["status"] == "inactive"


async def test_registered_in_the_past_is_billed_every_month_since_across_years(settings, plans):
    set_today(settings, "2026-02-01")
    c = await subscriber(settings, plans, cable="2025-11-20")
    account = await billing.account(c["id"])
    assert account["pending_months"] == [(2025, 11), (2025, 12), (2026, 1), (2026, 2)]
    assert account["due"] == 40000


async def test_a_paid_until_date_at_registration_counts_as_paid_before_the_box(settings, plans):
    set_today(settings, "2026-03-05")
    c = await subscriber(settings, plans, cable="2025-01-10", cable_paid_until="2026-04-30")
    account = await billing.account(c["id"])
    assert account["due"] == 0
    cells = await billing.year_grid(c["id"], 2026)
    assert [x["state"] for x in cells["cable"][:3]] == ["paid"] * 3
    assert all(x["opening"] for x in cells["cable"][:3])
    assert cells["cable"][3]["state"] == "scheduled"
    conn = (await customers.get_customer(c["id"]))["connections"]["cable"]
    assert conn["expires_on"] == dt.date(2026, 4, 30)
    # April is billed as paid on its first day; May is owed.
    set_today(settings, "2026-05-01")
    await billing.bill_month(settings)
    assert (await billing.account(c["id"]))["pending_months"] == [(2026, 5)]
    assert (await customers.get_customer(c["id"]))["connections"]["cable"]["expires_on"] == (
        dt.date(2026, 4, 30)
    )


async def test_a_mid_month_paid_until_date_counts_whole_months_only(settings, plans):
    set_today(settings, "2026-03-05")
    c = await subscriber(settings, plans, cable="2026-01-10", cable_paid_until="2026-03-15")
    assert (await billing.account(c["id"]))["pending_months"] == [(2026, 3)]
    conn = (await customers.get_customer(c["id"]))["connections"]["cable"]
    assert conn["expires_on"] == dt.date(2026, 2, 28)


async def test_the_month_becomes_billable_on_its_first_day_in_the_office_time_zone(settings, plans):
    set_today(settings, "2026-06-30", hour=23)
    c = await subscriber(settings, plans, cable="2026-06-01")
    await billing.bill_month(settings)
    assert (await billing.account(c["id"]))["pending_months"] == [(2026, 6)]
    # 00:30 on 1 July in São Paulo is still 30 June at 03:30 UTC... and the 1st locally.
    set_today(settings, "2026-07-01", hour=0)
    summary = await billing.bill_month(settings)
    assert summary["period"] == "2026-07" and summary["billed"] == 1
    assert (await billing.account(c["id"]))["pending_months"] == [(2026, 6), (2026, 7)]


async def test_billing_is_idempotent(settings, plans):
    set_today(settings, "2026-04-10")
    c = await subscriber(settings, plans, cable="2026-01-01", broadband="2026-02-15")
    first = await billing.bill_month(settings)
    again = await billing.bill_month(settings)
    year = await billing.ensure_year(settings)
    assert first["billed"] == 0 and again["billed"] == 0  # done when the customer was added
    assert year["years_opened"] == 0 and year["billed"] == 0
    # January to April of cable, February to April of broadband: a month has a row once billed.
    assert await Charge.count().where(Charge.customer == c["id"]) == 4 + 3


async def test_year_updater_catches_up_every_missed_year(settings, plans):
    set_today(settings, "2024-11-20")
    c = await subscriber(settings, plans, cable="2024-11-01")
    assert await Charge.count().where(Charge.customer == c["id"]) == 1
    assert [s for _, s, _ in await grid(c, 2024)][10:] == ["unpaid", "scheduled"]
    # The box was off for two years.
    set_today(settings, "2027-01-01", hour=0)
    summary = await billing.ensure_year(settings)
    assert summary["year"] == 2027
    assert summary["years_opened"] == 1
    assert summary["billed"] == 1 + 12 + 12 + 1  # December 2024 to January 2027
    assert await Charge.count().where(Charge.customer == c["id"]) == 1 + 26
    account = await billing.account(c["id"])
    assert len(account["pending_months"]) == 2 + 12 + 12 + 1
    assert account["pending_months"][-2:] == [(2026, 12), (2027, 1)]
    assert [s for _, s, _ in await grid(c, 2027)] == ["unpaid"] + ["scheduled"] * 11
    again = await billing.ensure_year(settings)
    assert again["years_opened"] == 0 and again["billed"] == 0


async def _office_off_for_two_years(settings, plans):
    """Five customers, eight connections (one cable suspended), billed up to November 2024;
    then the clock moves to 1 January 2027 with nothing run in between."""
    set_today(settings, "2024-11-20")
    people = []
    for n in range(5):
        both = {"broadband": "2024-11-01"} if n < 3 else {}
        people.append(await subscriber(settings, plans, cable="2024-11-01", **both))
    await Connection.update({Connection.status: "suspended"}).where(
        (Connection.customer == people[0]["id"]) & (Connection.service == "cable")
    )
    set_today(settings, "2027-01-01", hour=0)
    return people


async def test_the_year_updater_in_slices_does_every_connection_once(settings, plans):
    people = await _office_off_for_two_years(settings, plans)
    summary = await billing.ensure_year(settings, slice_size=3)  # slices of 3, 3 and the rest
    assert summary["years_opened"] == 8
    assert summary["billed"] == 8 * 26  # December 2024 to January 2027
    for person in people[1:]:
        account = await billing.account(person["id"])
        assert len(account["pending_months"]) == 2 + 12 + 12 + 1
    suspended = await grid(people[0], 2026)
    assert {state for _, state, _ in suspended} == {"waived"}
    assert await Charge.count() == 8 * (1 + 26)
    again = await billing.ensure_year(settings, slice_size=3)
    assert again["years_opened"] == 0 and again["billed"] == 0


async def test_slices_cover_every_connection_exactly_once(settings, plans):
    from appliance.billing import charges

    await _office_off_for_two_years(settings, plans)
    everyone = {r["id"] for r in await Connection.select(Connection.id)}
    seen: list = []
    for scope in await charges.slices(3):
        where, args = scope.where("c.customer = {}", "c.id")
        query = "SELECT c.id FROM connections c WHERE 1 = 1" + where  # noqa: S608
        rows = await Connection.raw(query, *args)
        seen += [r["id"] for r in rows]
    assert len(seen) == len(everyone) == 8
    assert {str(i) for i in seen} == {str(i) for i in everyone}


@pytest.mark.skipif(USE_PG, reason="the single write lock between slices is SQLite's")
async def test_the_write_lock_is_free_between_slices(settings, plans, monkeypatch):
    """A payment or a login waits for the write lock; between two slices of a long job it can
    take it at once (a busy timeout of zero), so no office-wide job makes them time out."""
    from appliance.billing import charges

    await _office_off_for_two_years(settings, plans)
    pause = charges._between_slices
    writes: list[int] = []

    async def write_meanwhile(held_s: float) -> None:
        other = sqlite3.connect(settings.sqlite_path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("CREATE TEMP TABLE IF NOT EXISTS probe (n INTEGER)")
            other.execute("UPDATE plans SET name = name WHERE 0")
            other.execute("COMMIT")
            writes.append(1)
        finally:
            other.close()
        await pause(held_s)

    monkeypatch.setattr(charges, "_between_slices", write_meanwhile)
    await billing.ensure_year(settings, slice_size=3)
    assert len(writes) == 2  # 8 connections: slices of 3, 3 and the rest; two gaps between
    await billing.bill_month(settings, slice_size=3)
    assert len(writes) == 2  # January is billed already: nothing to do, no slices
    set_today(settings, "2027-02-01")
    await billing.bill_month(settings, slice_size=3)
    assert len(writes) == 2 + 2


async def test_next_years_rows_can_be_made_ahead_and_are_not_billed_early(settings, plans):
    set_today(settings, "2026-12-31")
    c = await subscriber(settings, plans, cable="2026-12-01")
    summary = await billing.ensure_year(settings, 2027)
    assert summary["years_opened"] == 1 and summary["billed"] == 0
    assert {x["state"] for x in (await billing.year_grid(c["id"], 2027))["cable"]} == {"scheduled"}
    assert (await billing.bill_month(settings, 2027, 3))["period"] == "2026-12"
    assert await Charge.count().where(Charge.customer == c["id"]) == 1


async def test_a_plan_change_applies_from_the_next_month(settings, plans):
    from tests.helpers import make_plan

    set_today(settings, "2026-01-05")
    c = await subscriber(settings, plans, cable="2026-01-01")
    dearer = await make_plan(service="cable", name="Cable 250", monthly_price="250.00")
    set_today(settings, "2026-01-20")
    await customers.update_customer(
        c["id"],
        {
            "name": c["name"],
            "mobile": c["mobile"],
            "house": "1",
            "area": "Centro",
            "cable_plan": str(dearer["id"]),
            "cable_registered_on": "2026-01-01",
        },
        actor=SYSTEM,
        settings=settings,
        confirm_duplicates=True,
    )
    set_today(settings, "2026-02-01", hour=0)
    await billing.bill_month(settings)
    cells = (await billing.year_grid(c["id"], 2026))["cable"]
    assert (cells[0]["amount"], cells[0]["plan_name"]) == (10000, "Cable 100")
    assert (cells[1]["amount"], cells[1]["plan_name"]) == (25000, "Cable 250")


async def test_a_price_change_does_not_touch_months_already_billed(settings, plans):
    from appliance.plans.tables import Plan

    set_today(settings, "2026-03-10")
    c = await subscriber(settings, plans, cable="2026-03-01")
    await Plan.update({Plan.monthly_price: 12000}).where(Plan.id == plans["cable"]["id"])
    set_today(settings, "2026-04-01")
    await billing.bill_month(settings)
    assert [x for x in await grid(c, 2026)][2:4] == [(3, "unpaid", 10000), (4, "unpaid", 12000)]


async def test_suspended_connections_are_not_charged_while_suspended(settings, plans):
    set_today(settings, "2026-01-10")
    c = await subscriber(settings, plans, cable="2026-01-01", broadband="2026-01-01")
    await Connection.update({Connection.status: "suspended"}).where(
        (Connection.customer == c["id"]) & (Connection.service == "cable")
    )
    set_today(settings, "2026-02-01")
    await billing.bill_month(settings)
    assert (await grid(c, 2026))[:2] == [(1, "unpaid", 10000), (2, "waived", 0)]
    assert (await grid(c, 2026, "broadband"))[1] == (2, "unpaid", 8000)
    # Arrears from before the suspension stay due.
    account = await billing.account(c["id"])
    assert account["by_service"] == {"cable": 10000, "broadband": 16000}


async def test_removed_customers_are_not_charged(settings, plans):
    set_today(settings, "2026-01-10")
    c = await subscriber(settings, plans, cable="2026-01-01")
    await customers.archive_customer(c["id"], actor=SYSTEM)
    set_today(settings, "2026-02-01")
    await billing.bill_month(settings)
    assert (await grid(c, 2026))[1][1] == "waived"
    assert await billing.dues([c["id"]]) == []


async def test_reconnection_bills_the_current_month_again(settings, plans):
    set_today(settings, "2026-01-10")
    c = await subscriber(settings, plans, cable="2026-01-01")
    await Connection.update({Connection.status: "suspended"}).where(Connection.customer == c["id"])
    set_today(settings, "2026-03-03")
    await billing.bill_month(settings)
    assert (await grid(c, 2026))[2] == (3, "waived", 0)
    assert await billing.reconnect(c["id"], "cable", settings=settings)
    assert (await grid(c, 2026))[2] == (3, "unpaid", 10000)
    assert not await billing.reconnect(c["id"], "cable", settings=settings)
    assert (await billing.account(c["id"]))["pending_months"] == [(2026, 1), (2026, 3)]


async def test_dues_and_ledger_for_reminders_and_reports(settings, plans):
    set_today(settings, "2026-03-10")
    a = await subscriber(settings, plans, cable="2026-01-05", broadband="2026-03-01")
    b = await subscriber(settings, plans, broadband="2026-02-01")
    await subscriber(settings, plans, cable="2026-01-01", cable_paid_until="2026-12-31")
    rows = {r["customer_id"]: r for r in await billing.dues()}
    assert set(rows) == {a["id"], b["id"]}
    assert rows[a["id"]]["amount_due"] == 30000 + 8000
    assert rows[a["id"]]["pending"] == [(2026, 1), (2026, 2), (2026, 3)]
    assert rows[a["id"]]["by_service"] == {"cable": 30000, "broadband": 8000}
    only_bb = {r["customer_id"]: r for r in await billing.dues(service="broadband")}
    assert only_bb[a["id"]]["amount_due"] == 8000 and only_bb[a["id"]]["pending"] == [(2026, 3)]
    assert [r["customer_id"] for r in await billing.dues([b["id"]])] == [b["id"]]
    ledger = await billing.monthly_ledger(2026, customer_ids=[a["id"]], service="cable")
    assert [(r["month"], r["state"], r["charged"], r["paid"]) for r in ledger] == [
        (1, "billed", 10000, 0),
        (2, "billed", 10000, 0),
        (3, "billed", 10000, 0),
    ]  # April onwards is not billed yet: no rows


async def test_a_months_row_has_the_id_every_node_derives_and_ids_follow_the_months(
    settings, plans
):
    """Central and each box bill the same month under the same id (no twin rows to merge);
    the id starts with the month, so a month's rows sit together in the index."""
    from appliance.billing import sql

    set_today(settings, "2026-03-10")
    await subscriber(settings, plans, cable="2025-11-01", broadband="2026-02-01")
    await subscriber(settings, plans, cable="2026-01-15")
    set_today(settings, "2026-04-01")
    await billing.bill_month(settings)
    rows = await Charge.select(Charge.id, Charge.connection, Charge.year, Charge.month)
    assert len(rows) == 6 + 3 + 4
    for r in rows:
        assert r["id"] == sql.charge_id_of(r["connection"], r["year"] * 100 + r["month"])
    periods = [r["year"] * 100 + r["month"] for r in sorted(rows, key=lambda r: r["id"])]
    assert periods == sorted(periods)
    assert len({r["id"] for r in rows}) == len(rows)


async def _logged(table: str) -> int:
    from appliance.sync.tables import SyncChange

    return await SyncChange.count().where(SyncChange.table_name == table)


async def test_opening_a_year_sends_nothing_and_billing_a_month_sends_its_rows(settings, plans):
    """Every node opens its own grids (not logged); a billed month is logged like any edit.
    Inside a caller's own unlogged transaction (central seeding, sync applying), billing's
    inner switch must not turn logging back on."""
    from appliance import db
    from appliance.sync.state import applying

    set_today(settings, "2026-12-20")
    await subscriber(settings, plans, cable="2026-12-01", broadband="2026-12-01")
    await subscriber(settings, plans, cable="2026-12-01")
    before = await _logged("billing_connections")
    assert (await billing.ensure_year(settings, 2027))["years_opened"] == 3
    assert await _logged("billing_connections") == before
    charges_before = await _logged("billing_charges")
    set_today(settings, "2027-01-01", hour=1)
    assert (await billing.bill_month(settings))["billed"] == 3
    assert await _logged("billing_charges") == charges_before + 3
    set_today(settings, "2028-02-01", hour=1)
    logged = await _logged("billing_charges")
    async with db.write_transaction(), applying():
        summary = await billing.ensure_year(settings)
    assert summary["years_opened"] == 3 and summary["billed"] == 3 * 13
    assert await _logged("billing_charges") == logged
    assert await _logged("billing_connections") == before


async def test_months_an_earlier_version_scheduled_are_billed_in_place(settings, plans):
    """A database from before months were made at billing holds ``scheduled`` rows for the
    rest of the year: their month is billed on that row (no second one), at today's plan."""
    from appliance.db import new_id

    set_today(settings, "2026-10-10")
    c = await subscriber(settings, plans, cable="2026-10-01")
    conn = (await customers.get_customer(c["id"]))["connections"]["cable"]
    for month in (11, 12):
        await Charge.insert(
            Charge(
                id=new_id(),
                customer=c["id"],
                connection=conn["id"],
                service="cable",
                year=2026,
                month=month,
                state="scheduled",
                plan=plans["cable"]["id"],
                plan_name="Cable 100",
                amount=10000,
            )
        )
    assert [s for _, s, _ in await grid(c, 2026)][9:] == ["unpaid", "scheduled", "scheduled"]
    set_today(settings, "2026-11-01", hour=1)
    assert (await billing.bill_month(settings))["billed"] == 1
    assert await Charge.count().where(Charge.customer == c["id"]) == 3
    assert (await grid(c, 2026))[9:] == [
        (10, "unpaid", 10000),
        (11, "unpaid", 10000),
        (12, "scheduled", 10000),
    ]
    assert (await billing.account(c["id"]))["pending_months"] == [(2026, 10), (2026, 11)]
