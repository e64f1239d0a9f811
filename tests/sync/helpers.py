"""What sync tests compare: an office's synced rows as a node holds them, normalised so a SQLite
box and PostgreSQL central can be compared field by field, and small builders for offline
work."""

# Table and column names in SQL text come from the migration's fixed lists.
# ruff: noqa: S608

from __future__ import annotations

import itertools
import json
import uuid
from typing import Any

from piccolo.columns import JSON

from appliance.customers.tables import Customer
from appliance.sync import codec
from appliance.sync.client import status
from appliance.sync.state import get_state
from appliance.sync.tables import SyncChange

_edits = itertools.count(1)

# Rows two boxes may have created for the same thing under different ids (merge.NATURAL_KEYS)
# are compared by that key.
KEYED = {
    "billing_charges": ("connection", "year", "month"),
    "billing_accounts": ("customer",),
    "billing_connections": ("connection",),
}
_OF_OFFICE = "SELECT id FROM customers WHERE office = {office}"
SCOPES = {
    "customers": "office = {office}",
    "connections": f"customer IN ({_OF_OFFICE})",
    "billing_connections": f"connection IN (SELECT id FROM connections WHERE customer IN "
    f"({_OF_OFFICE}))",
    "billing_charges": f"customer IN ({_OF_OFFICE})",
    "billing_payments": f"customer IN ({_OF_OFFICE})",
    "billing_allocations": f"payment IN (SELECT id FROM billing_payments WHERE customer IN "
    f"({_OF_OFFICE}))",
    "billing_reversals": f"payment IN (SELECT id FROM billing_payments WHERE customer IN "
    f"({_OF_OFFICE}))",
    "billing_accounts": f"customer IN ({_OF_OFFICE})",
    "complaints": f"customer IN ({_OF_OFFICE})",
    "complaint_events": f"complaint IN (SELECT id FROM complaints WHERE customer IN "
    f"({_OF_OFFICE}))",
}
COMPARED = list(SCOPES)


def _norm(table: str, column: str, value: Any) -> Any:
    value = codec.decode(table, column, value)
    if value is not None and codec.column_types(table).get(column) is JSON:
        return json.loads(value) if isinstance(value, str) else value
    return value


async def office_rows(table: str, office: str) -> dict[Any, dict[str, Any]]:
    """The office's rows of ``table`` on the node in use, keyed by id (or natural key)."""
    columns = [c for c in codec.columns_of(table) if c not in codec.LOCAL_REFERENCES.get(table, ())]
    where = SCOPES[table].replace("{office}", "{}")
    sql = f'SELECT {", ".join(chr(34) + c + chr(34) for c in columns)} FROM "{table}" '
    rows = await SyncChange.raw(sql + f"WHERE {where}", *([office] * where.count("{}")))
    keyed = KEYED.get(table)
    out: dict[Any, dict[str, Any]] = {}
    for row in rows:
        values = {c: _norm(table, c, row[c]) for c in columns}
        if keyed:
            key = tuple(values[k] for k in keyed)
            values.pop("id")
        else:
            key = values["id"]
        out[key] = values
    if table == "billing_allocations":
        # The charge an allocation names may be known here under another id (an alias).
        charges = await SyncChange.raw(
            "SELECT a.id, c.connection, c.year, c.month FROM billing_allocations a "
            "JOIN billing_charges c ON c.id = a.charge"
        )
        by_id = {
            _norm(table, "id", r["id"]): (
                _norm("billing_charges", "connection", r["connection"]),
                int(r["year"]),
                int(r["month"]),
            )
            for r in charges
        }
        for key, values in out.items():
            values["charge"] = by_id.get(key)
    return out


async def office_state(node: Any, office: str) -> dict[str, dict[Any, dict[str, Any]]]:
    await node.use()
    return {table: await office_rows(table, office) for table in COMPARED}


def diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Readable differences between two ``office_state`` results."""
    out = []
    for table in COMPARED:
        left, right = a[table], b[table]
        for key in sorted(set(left) | set(right), key=str):
            if key not in left or key not in right:
                out.append(f"{table} {key}: only on {'right' if key not in left else 'left'}")
                continue
            for column in left[key]:
                if left[key][column] != right[key].get(column):
                    out.append(
                        f"{table} {key}.{column}: {left[key][column]!r} != "
                        f"{right[key].get(column)!r}"
                    )
    return out


async def assert_converged(central: Any, *boxes: Any) -> dict[str, Any]:
    """Every box holds exactly what central holds of its office; nothing is left to send and
    central's count of the box's changes is the box's own."""
    from appliance.sync.tables import SyncBox

    states = {}
    for box in boxes:
        office = box.settings.office_code
        if office not in states:
            states[office] = await office_state(central, office)
        mine = await office_state(box, office)
        problems = diff(states[office], mine)
        assert not problems, f"{box.name} differs from central:\n" + "\n".join(problems[:20])
        await box.use()
        info = await status()
        state = await get_state()
        assert info["pending"] == 0, f"{box.name} still has changes to send"
        await central.use()
        rows = await SyncBox.select(SyncBox.last_seq).where(SyncBox.node_id == state["node_id"])
        assert rows[0]["last_seq"] == state["last_seq"], "central and the box disagree on seq"
    return states


async def payments(node: Any, office: str | None = None) -> list[tuple[str, str, int]]:
    """(id, number, amount) of every payment on ``node``, sorted (a duplicate would show)."""
    await node.use()
    sql = "SELECT p.id, p.number, p.amount FROM billing_payments p"
    args: list[Any] = []
    if office:
        sql += " JOIN customers c ON c.id = p.customer WHERE c.office = {}"
        args.append(office)
    rows = await SyncChange.raw(sql, *args)
    return sorted((str(r["id"]), r["number"], int(r["amount"])) for r in rows)


async def edit_customer(customer_id: Any, **values: Any) -> None:
    """A staff edit of customer fields on the node in use (captured like any other)."""
    await Customer.update({getattr(Customer, k): v for k, v in values.items()}).where(
        Customer.id == uuid.UUID(str(customer_id))
    )


def unique_mobile() -> str:
    return f"55219{next(_edits):08d}"
