"""A box put back from an old backup (or a copied card): central sees its sequence numbers
reused, the box stops handing out invoice numbers until it has caught up, and no number is ever
given out twice; central refuses a duplicate number (dead letter), never overwriting."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from appliance import db
from appliance.billing.payments import NumberingBlocked
from appliance.sync import client
from appliance.sync.state import get_state
from appliance.sync.tables import SyncBox, SyncDeadLetter
from tests.billing.conftest import pay, subscriber
from tests.helpers import make_plan
from tests.sync.conftest import new_code
from tests.sync.helpers import assert_converged, edit_customer, payments, unique_mobile


def _copy(src: Path, dst: Path) -> None:
    """A consistent copy of a live SQLite database (what ``ctvms backup`` makes)."""
    with sqlite3.connect(src) as source, sqlite3.connect(dst) as target:
        source.backup(target)


async def _put_back(box, backup: Path) -> None:
    await box.use()
    await db.engine().close_idle()
    # Through SQLite's backup API, so the database's WAL is replaced too.
    _copy(backup, box.settings.sqlite_path)


async def _office(make_box, central, tmp_path):
    box = await make_box(central, new_code())
    await box.use()
    plan = await make_plan(service="cable", monthly_price="100.00")
    customer = await subscriber(box.settings, {"cable": plan}, cable="2026-01-01")
    await pay(box.settings, customer, "250.00")
    await box.sync()
    backup = tmp_path / f"backup-{box.settings.office_code}.sqlite3"
    _copy(box.settings.sqlite_path, backup)
    # After the backup: two more payments reach central.
    await box.use()
    later = [await pay(box.settings, customer, "250.00") for _ in range(2)]
    await box.sync()
    return box, customer, backup, [p["number"] for p in later]


async def test_a_restored_box_stops_numbering_until_it_caught_up(
    shared_central, make_box, tmp_path
):
    box, customer, backup, later_numbers = await _office(make_box, shared_central, tmp_path)
    office = box.settings.office_code
    await _put_back(box, backup)
    # The old copy knows one payment; it edits a customer (a change with a reused number).
    await box.use()
    assert len(await payments(box)) == 1
    await edit_customer(customer["id"], mobile=unique_mobile())
    with pytest.raises(client.IdentityConflict):
        await box.sync()
    await box.use()
    info = await client.status()
    assert info["numbering_blocked"] and info["blocked_reason"]
    with pytest.raises(NumberingBlocked) as refused:
        await pay(box.settings, customer, "250.00")
    assert "paused" in refused.value.message
    assert len(await payments(box)) == 1, "a refused payment left something behind"
    await shared_central.use()
    state = (await SyncBox.select().where(SyncBox.office_code == office))[0]
    assert state["identity_conflicts"] == 1
    # The next round catches up: the box gets its own later payments back, its edit goes up,
    # and numbering resumes after every number central has seen.
    await box.sync()
    await box.use()
    assert not (await client.status())["numbering_blocked"]
    fresh = await pay(box.settings, customer, "250.00")
    serial = int(fresh["number"].rsplit("-", 1)[1])
    assert serial > max(int(n.rsplit("-", 1)[1]) for n in later_numbers)
    await box.sync()
    await box.sync()
    await assert_converged(shared_central, box)
    numbers = [n for _, n, _ in await payments(shared_central, office)]
    assert len(numbers) == len(set(numbers)) == 4


async def test_a_restored_box_with_nothing_new_finds_out_before_its_first_payment(
    shared_central, make_box, tmp_path
):
    box, customer, backup, later_numbers = await _office(make_box, shared_central, tmp_path)
    await _put_back(box, backup)
    # Nothing pending on the old copy: the round's first exchange still shows central has
    # more of this box's history than the box itself.
    with pytest.raises(client.IdentityConflict):
        await box.sync()
    await box.use()
    with pytest.raises(NumberingBlocked):
        await pay(box.settings, customer, "250.00")
    await box.sync()
    await box.use()
    fresh = await pay(box.settings, customer, "250.00")
    assert fresh["number"] not in later_numbers
    await box.sync()
    await box.sync()
    await assert_converged(shared_central, box)


async def test_a_number_given_out_twice_goes_to_dead_letters_and_never_overwrites(
    shared_central, make_box, tmp_path
):
    box, customer, backup, later_numbers = await _office(make_box, shared_central, tmp_path)
    office = box.settings.office_code
    at_central = {n: (i, a) for i, n, a in await payments(shared_central, office)}
    await _put_back(box, backup)
    # Before it could know, the old copy took a payment: it reuses the next number.
    await box.use()
    twin = await pay(box.settings, customer, "300.00")
    assert twin["number"] == later_numbers[0]
    with pytest.raises(client.IdentityConflict):
        await box.sync()
    await box.sync()
    await shared_central.use()
    node = (await get_state_of(box))["node_id"]
    dead = await SyncDeadLetter.select().where(SyncDeadLetter.node_id == node)
    assert any(d["table_name"] == "billing_payments" for d in dead)
    after = {n: (i, a) for i, n, a in await payments(shared_central, office)}
    assert after[twin["number"]] == at_central[twin["number"]], "central overwrote a payment"
    assert len(after) == 3


async def get_state_of(box):
    await box.use()
    return await get_state()
