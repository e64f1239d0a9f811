"""Concurrent edits, money taken twice for the same months, wrong clocks and newer schemas."""

from __future__ import annotations

import datetime as dt
import json

from appliance import clock
from appliance.customers.tables import Customer
from appliance.sync import central as central_service
from appliance.sync import client, hlc
from appliance.sync.state import get_state, now_ms, update_state
from appliance.sync.tables import SyncBox, SyncConflict, SyncDeadLetter, SyncOverpayment
from tests.billing.conftest import pay, subscriber
from tests.helpers import make_plan
from tests.sync.conftest import box_headers, enroll_box, new_code, post
from tests.sync.helpers import assert_converged, edit_customer, payments, unique_mobile


async def _two_boxes(make_box, central):
    """Two boxes of one office sharing a customer with twelve months due."""
    a = await make_box(central, new_code())
    await a.use()
    plan = await make_plan(service="cable", monthly_price="100.00")
    customer = await subscriber(a.settings, {"cable": plan}, cable="2026-01-01")
    await pay(a.settings, customer, "250.00")
    await a.sync()
    b = await make_box(central, a.settings.office_code, enroll=False)
    await central.use()
    await enroll_box(b, central, await central_service.new_enroll_code(a.settings.office_code))
    await b.sync()
    return a, b, customer


async def _field(node, customer_id, name):
    await node.use()
    # The column name is one of the test's own literals.
    rows = await Customer.raw(f'SELECT "{name}" AS v FROM customers WHERE id = {{}}', customer_id)  # noqa: S608
    return rows[0]["v"]


async def test_concurrent_edits_pick_one_winner_everywhere_and_keep_the_loser(
    shared_central, make_box
):
    a, b, customer = await _two_boxes(make_box, shared_central)
    cid = customer["id"]
    # Offline: both edit the mobile; A also the area, B the house.
    await a.use()
    await edit_customer(cid, mobile="5521911110000", area="Norte")
    await b.use()
    await edit_customer(cid, mobile="5521922220000", house="77B")
    for box in (a, b, a, b):
        await box.sync()
    values = {n: await _field(n, cid, "mobile") for n in (shared_central, a, b)}
    assert len(set(values.values())) == 1, values
    await b.use()
    b_stamp = (await get_state())["hlc"]
    # B edited last (its HLC is later) and so wins; had the stamps tied, the larger node id.
    assert values[shared_central] == "5521922220000", b_stamp
    for node in (shared_central, a, b):
        assert await _field(node, cid, "area") == "Norte"
        assert await _field(node, cid, "house") == "77B"
    await shared_central.use()
    conflicts = await SyncConflict.select().where(
        (SyncConflict.row_id == cid) & (SyncConflict.field == "mobile")
    )
    assert conflicts, "the losing edit was dropped silently"
    assert json.loads(conflicts[0]["loser_value"]) == "5521911110000"
    assert json.loads(conflicts[0]["winner_value"]) == "5521922220000"
    await assert_converged(shared_central, a, b)


async def test_central_and_a_box_edit_one_field(shared_central, make_box):
    a, b, customer = await _two_boxes(make_box, shared_central)
    cid = customer["id"]
    await a.use()
    await edit_customer(cid, name="Box Name")
    await shared_central.use()
    await edit_customer(cid, name="Central Name")  # later: central's edit wins
    for box in (a, b, a):
        await box.sync()
    names = {await _field(n, cid, "name") for n in (shared_central, a, b)}
    assert names == {"Central Name"}
    await assert_converged(shared_central, a, b)


async def test_two_boxes_take_money_for_the_same_months_and_central_keeps_both(
    shared_central, make_box
):
    a, b, customer = await _two_boxes(make_box, shared_central)
    office = a.settings.office_code
    await a.use()
    first = await pay(a.settings, customer, "950.00")  # everything that is due
    await b.use()
    second = await pay(b.settings, customer, "950.00")  # the same months, offline
    for box in (a, b, a, b):
        await box.sync()
    numbers = [n for _, n, _ in await payments(shared_central, office)]
    assert first["number"] in numbers and second["number"] in numbers
    await shared_central.use()
    flags = await SyncOverpayment.select().where(SyncOverpayment.customer == customer["id"])
    assert flags and flags[-1]["excess"] == 95000
    rows = await Customer.raw(
        "SELECT credit FROM billing_accounts WHERE customer = {}", customer["id"]
    )
    assert rows[0]["credit"] == 95000
    states = await assert_converged(shared_central, a, b)
    charges = states[office]["billing_charges"].values()
    assert all(c["paid"] <= c["amount"] for c in charges)


async def test_a_box_with_a_clock_days_off_keeps_order_and_is_reported(shared_central, make_box):
    a, b, customer = await _two_boxes(make_box, shared_central)
    cid = customer["id"]
    try:
        # A's clock runs three days ahead: its stamps are in central's future.
        clock.shift(dt.timedelta(days=3))
        await a.use()
        await update_state(hlc=hlc.tick((await get_state())["hlc"], now_ms()))
        await edit_customer(cid, area="Ahead")
        await a.sync()
        await shared_central.use()
        node = (await get_state_of(a))["node_id"]
        await shared_central.use()
        row = (await SyncBox.select().where(SyncBox.node_id == node))[0]
        assert row["future_stamps"] >= 1
        assert row["clock_offset_ms"] < -2 * 86_400_000
        await a.use()
        assert (await client.status())["clock_warning"]
        # B's clock runs three days behind; its later edit of the field still wins.
        clock.reset()
        clock.shift(dt.timedelta(days=-3))
        await b.sync()
        await b.use()
        assert await _field(b, cid, "area") == "Ahead"
        info = await client.status()
        assert info["clock_warning"] and info["clock_offset_ms"] > 2 * 86_400_000
        await edit_customer(cid, area="Behind but later")
        await b.sync()
    finally:
        clock.reset()
    await a.sync()
    for node in (shared_central, a, b):
        assert await _field(node, cid, "area") == "Behind but later"
    await assert_converged(shared_central, a, b)


async def test_schema_versions(shared_central, make_box):
    a, _b, customer = await _two_boxes(make_box, shared_central)
    await a.use()
    state = await get_state()
    # A change of a schema central does not know yet is kept as a dead letter.
    await edit_customer(customer["id"], mobile=unique_mobile())
    [change] = await client._pending_batch(state, 10)
    change["schema_version"] = 2
    answer = post(
        shared_central.url,
        "push",
        {"schema_version": 2, "now_ms": 0, "changes": [change]},
        box_headers(str(state["node_id"]), state["box_secret"]),
    ).json()
    assert answer["dead_letters"] == 1
    await shared_central.use()
    dead = await SyncDeadLetter.select().where(SyncDeadLetter.change_id == change["id"])
    assert "schema version 2" in dead[0]["reason"]
    # Central runs a newer schema: its next edits are version 2; the box stops before them,
    # says it needs an update, and keeps pushing its own work.
    await shared_central.use()
    await update_state(schema_version=2)
    try:
        await edit_customer(customer["id"], name="Newer schema")
        await update_state(schema_version=1)
        await edit_customer(customer["id"], area="Readable but after")
        summary = await a.sync()
        assert summary["needs_update"]
        await a.use()
        assert (await client.status())["needs_update"]
        assert await _field(a, customer["id"], "name") != "Newer schema"
        assert await _field(a, customer["id"], "area") != "Readable but after"
        cursor = (await get_state())["cursor"]
        await edit_customer(customer["id"], house="9")
        summary = await a.sync()
        assert summary["pushed"] == 1 and summary["needs_update"]
        await a.use()
        assert (await get_state())["cursor"] == cursor
    finally:
        await shared_central.use()
        await update_state(schema_version=1)


async def get_state_of(box):
    await box.use()
    return await get_state()
