"""Push and pull over real HTTP between boxes (SQLite) and central (a ``ctvms serve`` process on
PostgreSQL)."""

from __future__ import annotations

import datetime as dt

from appliance import clock
from appliance.customers.status import update_statuses
from appliance.customers.tables import Connection, Customer
from appliance.sync.tables import SyncChange
from tests.billing.conftest import pay, subscriber
from tests.helpers import make_plan


async def _customers() -> dict[str, str]:
    return {str(r["id"]): r["name"] for r in await Customer.select(Customer.id, Customer.name)}


async def test_push_then_pull_reaches_the_other_box_of_the_office(central, make_box):
    a = await make_box(central, "AA")
    await a.use()
    plans = {"cable": await make_plan(service="cable", monthly_price="100.00")}
    customer = await subscriber(a.settings, plans, cable="2026-12-01", name="Ana Souza")
    await pay(a.settings, customer, "100.00")
    summary = await a.sync()
    assert summary["pushed"] > 0
    await a.use()
    assert await SyncChange.count().where(SyncChange.sent == False) == 0  # noqa: E712

    await central.use()
    assert (await _customers())[str(customer["id"])] == "Ana Souza"
    rows = await Customer.raw("SELECT office FROM customers WHERE id = {}", customer["id"])
    assert rows[0]["office"] == "AA"

    # A second box of the same office starts empty and bootstraps, then pulls.
    code = await central.new_office("BB")  # another office: must not receive AA's rows
    assert code
    b = await make_box(central, "AA", enroll=False)
    from appliance.sync import central as central_service

    await central.use()
    fresh = await central_service.new_enroll_code("AA")
    from tests.sync.conftest import enroll_box

    await enroll_box(b, central, fresh)
    await b.sync()
    await b.use()
    assert (await _customers())[str(customer["id"])] == "Ana Souza"


async def _status(connection_id) -> str:
    rows = await Connection.select(Connection.status).where(Connection.id == connection_id)
    return rows[0]["status"]


async def _box_with_a_subscriber(central, make_box):
    """A box of office AA with one cable subscriber registered on the 1st of this month."""
    a = await make_box(central, "AA")
    await a.use()
    today = clock.today(a.settings.tz)
    plans = {"cable": await make_plan(service="cable", monthly_price="100.00")}
    customer = await subscriber(a.settings, plans, cable=today.replace(day=1).isoformat())
    return a, customer, customer["connections"]["cable"]["id"], today


async def test_statuses_are_derived_by_each_node_and_not_sent(central, make_box):
    a, customer, conn_id, _today = await _box_with_a_subscriber(central, make_box)
    await pay(a.settings, customer, "100.00")  # this month: paid to its last day
    await a.sync()
    await a.use()
    expires = (await Connection.select(Connection.expires_on).where(Connection.id == conn_id))[0][
        "expires_on"
    ]
    past_grace = expires + dt.timedelta(days=61)

    # The box's nightly run suspends the connection and has nothing to send for it.
    assert (await update_statuses(a.settings, today=past_grace))["suspended"] == 1
    assert await _status(conn_id) == "suspended"
    assert (await a.sync())["pushed"] == 0
    # Central derives the same status from the same expiry with its own run.
    await central.use()
    assert await _status(conn_id) == "active"
    await update_statuses(central.settings, today=past_grace)
    assert await _status(conn_id) == "suspended"


async def _months_of(connection_id, year: int, month: int) -> list[str]:
    rows = await Connection.raw(
        "SELECT id FROM billing_charges WHERE connection = {} AND year = {} AND month = {}",
        connection_id,
        year,
        month,
    )
    return [str(r["id"]) for r in rows]


async def test_a_month_billed_by_the_box_and_by_central_apart_is_one_row(central, make_box):
    """Each node bills the month on its own first day; the row has the same id on both, so
    sync merges it into itself instead of making an alias (or a second charge)."""
    from appliance.billing import charges, rules, sql

    a, customer, conn_id, today = await _box_with_a_subscriber(central, make_box)
    await a.sync()
    nxt = rules.split(rules.next_period(rules.period_of(today)))
    first_day = dt.datetime(*nxt, 1, 0, 30, tzinfo=a.settings.tz)
    clock.shift(first_day - clock.now())
    try:
        for node in (a, central):
            await node.use()
            assert (await charges.bill_month(node.settings))["billed"] >= 1
            assert await _months_of(conn_id, *nxt) == [
                str(sql.charge_id_of(conn_id, nxt[0] * 100 + nxt[1]))
            ]
        await a.sync()
        for node in (a, central):
            await node.use()
            assert len(await _months_of(conn_id, *nxt)) == 1
            aliases = await Connection.raw(
                "SELECT count(*) AS n FROM sync_aliases WHERE table_name = 'billing_charges'"
            )
            assert aliases[0]["n"] == 0
        await a.use()
        await pay(a.settings, customer, "200.00")  # this month and the next, both settled
        await a.sync()
        await central.use()
        rows = await Connection.raw(
            "SELECT paid FROM billing_charges WHERE connection = {} AND year = {} AND month = {}",
            conn_id,
            *nxt,
        )
        assert [r["paid"] for r in rows] == [10000]
    finally:
        clock.reset()
