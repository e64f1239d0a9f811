"""A batch's runs of field merges and mail statuses, applied a few statements at a time, leave
exactly what applying the same changes one by one leaves: rows, conflicts, dead letters, the
change log and its feed numbers."""

# The SQL text below only interpolates placeholder lists; values are bound parameters.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest

from appliance.db import write_transaction
from appliance.sync import merge
from appliance.sync.state import applying, get_state
from appliance.sync.tables import SyncChange
from tests.billing.conftest import subscriber
from tests.helpers import make_plan
from tests.sync.conftest import new_code


class _Undo(Exception):
    """Raised to roll an experiment back once its result is read."""


def _change(node: str, office: str, seq: int, stamp: int, table: str, row: Any, **kw: Any) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "seq": 1_000_000 + seq,  # past the box's own changes
        "hlc": stamp,
        "node_id": node,
        "office_code": office,
        "table_name": table,
        "row_id": str(row),
        "customer_id": kw.pop("customer", None),
        "op": kw.pop("op", "update"),
        "data": kw.pop("data"),
        "old": kw.pop("old", {}),
        "schema_version": 1,
    }


async def _batch(box) -> list[dict[str, Any]]:
    """Customers and a month of the box (synced to central), and changes a box might push."""
    await box.use()
    plan = await make_plan(service="cable", monthly_price="100.00")
    customers = [
        (await subscriber(box.settings, {"cable": plan}, cable="2026-01-01"))["id"]
        for _ in range(3)
    ]
    await box.sync()
    rows = await SyncChange.raw(
        "SELECT id, customer FROM billing_charges WHERE customer = {} ORDER BY year, month",
        customers[0],
    )
    charge = rows[0]["id"]
    state = await get_state()
    node, office = str(state["node_id"]), box.settings.office_code
    now = int(state["hlc"]) + 1000
    c1, c2, c3 = (str(c) for c in customers)
    mail = uuid.uuid4()
    at = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC).isoformat()
    specs = [
        ("customers", c1, now + 1, {"area": "North"}, {}),
        # A second edit of the same row, started from a value this node never had: a conflict.
        ("customers", c1, now + 2, {"area": "South", "house": "12A"}, {"area": "West"}),
        # Older than the edit just before it in the same batch: it loses to that one.
        ("customers", c1, now, {"house": "99"}, {}),
        # Stamped before everything this node knows: it loses, and the loser is kept.
        ("customers", c2, 1, {"name": "Stale Name"}, {"name": "Someone Else"}),
        ("customers", c3, now + 3, {"mobile": "5521999990001"}, {}),
        # An update of a row nobody has: a dead letter, the rest goes on.
        ("customers", uuid.uuid4(), now + 4, {"area": "Nowhere"}, {}),
        ("customers", c3, now + 5, {"area": "East"}, {}),
        ("billing_charges", charge, now + 6, {"paid": 5000}, {}),
        ("billing_charges", charge, now + 7, {"paid": 10000}, {"paid": 5000}),
    ]
    changes = [
        _change(node, office, n, stamp, table, row, data=data, old=old, customer=c1)
        for n, (table, row, stamp, data, old) in enumerate(specs, start=1)
    ]
    n = len(specs)
    mail_data = {"kind": "invoice", "to_addr": "a@example.test", "status": "queued"}
    changes += [
        _change(node, office, n + 1, now + 8, "outbox", mail, op="insert", data=mail_data),
        _change(
            node, office, n + 2, now + 9, "outbox", mail, data={"status": "sent", "sent_at": at}
        ),
        _change(node, office, n + 3, now + 10, "outbox", uuid.uuid4(), op="insert", data=mail_data),
    ]
    return changes


async def _state_after(apply, changes: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply, read what the changes left, roll back."""
    ids = [uuid.UUID(c["id"]) for c in changes]
    rows = {c["row_id"] for c in changes}
    found: dict[str, Any] = {}

    async def read(sql: str, *args: Any) -> list[dict[str, Any]]:
        return [{k: str(v) for k, v in r.items()} for r in await SyncChange.raw(sql, *args)]

    marks = ", ".join("{}" for _ in ids)
    row_ids = [uuid.UUID(r) for r in rows]
    row_marks = ", ".join("{}" for _ in row_ids)
    try:
        async with write_transaction(), applying():
            found["outcome"] = await apply(changes)
            found["customers"] = await read(
                f"SELECT id, name, area, house, mobile FROM customers WHERE id IN ({row_marks}) "
                "ORDER BY id",
                *row_ids,
            )
            found["charges"] = await read(
                f"SELECT id, paid FROM billing_charges WHERE id IN ({row_marks})", *row_ids
            )
            found["conflicts"] = await read(
                "SELECT table_name, row_id, field, winner_value, winner_hlc, loser_value, "
                f"loser_hlc FROM sync_conflicts WHERE row_id IN ({row_marks}) "
                "ORDER BY row_id, field, winner_hlc",
                *row_ids,
            )
            found["dead"] = await read(
                f"SELECT change_id, reason FROM sync_dead_letters WHERE change_id IN ({marks})",
                *ids,
            )
            log = await SyncChange.raw(
                "SELECT id, row_id, data, origin, feed_seq FROM sync_changes "
                f"WHERE id IN ({marks})",
                *ids,
            )
            first = min((int(r["feed_seq"]) for r in log if r["feed_seq"] is not None), default=0)
            found["log"] = sorted(
                (
                    str(r["id"]),
                    str(r["row_id"]),
                    json.loads(r["data"]),
                    r["origin"],
                    None if r["feed_seq"] is None else int(r["feed_seq"]) - first,
                )
                for r in log
            )
            found["mail"] = await read(
                "SELECT id, office_code, kind, to_addr, status, sent_at FROM sync_mail_status "
                f"WHERE id IN ({row_marks}) ORDER BY id",
                *row_ids,
            )
            raise _Undo
    except _Undo:
        pass
    return found


def _totals(outcomes: list[merge.Outcome]) -> dict[str, Any]:
    return {
        "applied": sum(o.applied for o in outcomes),
        "dead": sum(o.dead for o in outcomes),
        "conflicts": sum(o.conflicts for o in outcomes),
        "customers": set().union(*(o.customers for o in outcomes)),
    }


@pytest.mark.parametrize("where", ["central", "box"])
async def test_runs_leave_what_one_by_one_leaves(where, shared_central, make_box, monkeypatch):
    box = await make_box(shared_central, new_code())
    changes = await _batch(box)
    node = shared_central if where == "central" else box
    central = where == "central"
    await node.use()
    if not central:
        # A box applies changes made elsewhere: give them another node's id.
        other = str(uuid.uuid4())
        changes = [{**c, "node_id": other} for c in changes]

    runs: list[int] = []
    for name in ("_merge_run", "_mail_statuses"):
        original = getattr(merge, name)

        async def counted(run, *args, _original=original):
            runs.append(len(run))
            return await _original(run, *args)

        monkeypatch.setattr(merge, name, counted)

    async def at_once(batch):
        return _totals([await merge.apply_changes(batch, central=central)])

    async def one_by_one(batch):
        return _totals([await merge.apply_changes([c], central=central) for c in batch])

    together = await _state_after(at_once, [dict(c, data=dict(c["data"])) for c in changes])
    assert runs and max(runs) > 1, "the batch was not applied in runs"
    runs.clear()
    alone = await _state_after(one_by_one, [dict(c, data=dict(c["data"])) for c in changes])
    assert not runs
    assert together == alone
    # And what that is, so both being wrong the same way would show.
    customers = {r["id"]: r for r in together["customers"]}
    c1, c2, c3 = (str(changes[i]["row_id"]) for i in (0, 3, 4))
    assert customers[c1]["area"] == "South" and customers[c1]["house"] == "12A"
    assert customers[c2]["name"] != "Stale Name"
    assert customers[c3]["area"] == "East" and customers[c3]["mobile"] == "5521999990001"
    assert together["charges"][0]["paid"] == "10000"
    assert {(c["row_id"], c["field"]) for c in together["conflicts"]} == {
        (c1, "area"),
        (c2, "name"),
    }
    assert [d["change_id"] for d in together["dead"]] == [changes[5]["id"]]
    assert together["outcome"]["dead"] == 1
    assert together["outcome"]["applied"] == len(changes) - 1
    if central:
        mail = {r["id"]: r for r in together["mail"]}
        assert mail[changes[9]["row_id"]]["status"] == "sent"
        assert mail[changes[9]["row_id"]]["kind"] == "invoice"
        assert mail[changes[11]["row_id"]]["status"] == "queued"
        fed = [entry for entry in together["log"] if entry[4] is not None]
        assert len(fed) == len(changes) - 4  # not the dead letter, not the outbox
    else:
        assert together["mail"] == []


async def test_insert_absent_adds_only_the_rows_missing_here_and_leaves_the_others(settings):
    """A bootstrap page: rows already here (a pull got them first) keep their values, the
    others go in once, and the count says how many went in."""
    from appliance.db import new_id
    from appliance.plans.tables import Plan

    here = await make_plan(name="Kept as it is", monthly_price="100.00")
    now = dt.datetime.now(dt.UTC)

    def plan_row(plan_id: Any, name: str) -> dict[str, Any]:
        return {
            "id": plan_id,
            "service": "cable",
            "name": name,
            "monthly_price": 5000,
            "description": "",
            "retired_at": None,
            "created_at": now,
            "updated_at": now,
        }

    fresh = [new_id(), new_id()]
    page = [plan_row(here["id"], "From the snapshot"), *(plan_row(i, f"New {i}") for i in fresh)]
    async with write_transaction(), applying():
        assert await merge.insert_absent("plans", page) == 2
        assert await merge.insert_absent("plans", page) == 0
    names = {r["id"]: r["name"] for r in await Plan.select(Plan.id, Plan.name)}
    assert names[here["id"]] == "Kept as it is"
    assert {names[i] for i in fresh} == {f"New {i}" for i in fresh}
