"""What is synced and how values travel: the synced tables with their merge mode, and the
conversion of a change's JSON values (SQLite's json_object or PostgreSQL's jsonb) back to the
Python values the database drivers take."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from functools import cache, lru_cache
from typing import Any

from piccolo.columns import (
    JSON,
    UUID,
    BigInt,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    Timestamptz,
)

# Append-only tables: a row is inserted once and never changes, so inserting it when absent is
# the whole merge. The others merge field by field (HLC, then node id).
APPEND = "append"
MERGE = "merge"
MODES = {
    "plans": MERGE,
    "customers": MERGE,
    "connections": MERGE,
    "billing_connections": MERGE,
    "billing_charges": MERGE,
    "billing_payments": APPEND,
    "billing_allocations": APPEND,
    "billing_reversals": APPEND,
    "billing_accounts": MERGE,
    "complaints": MERGE,
    "complaint_events": APPEND,
    "outbox": MERGE,
}
# Parents before children: a snapshot is written in this order so foreign keys hold.
ORDER = list(MODES)
# Fields that change as a side effect (bookkeeping or central's recomputation): they merge by
# (HLC, node) like any other but a difference is not a conflict worth the owner's time.
QUIET_FIELDS = {"updated_at", "search_text", "paid", "credit", "rows_through", "attempts"}
# Staff accounts are per box: a payment's or reversal's user is kept by name only elsewhere.
LOCAL_REFERENCES = {
    "billing_payments": ("received_by", "idempotency_key"),
    "billing_reversals": ("reversed_by",),
}
BILLING_TABLES = {"billing_payments", "billing_allocations", "billing_reversals"}


@cache
def table_class(name: str) -> Any:
    from appliance.tables import ALL_TABLES

    for table in ALL_TABLES:
        if table._meta.tablename == name:
            return table
    raise KeyError(name)


@cache
def column_types(name: str) -> dict[str, type]:
    types: dict[str, type] = {"office": str}
    for column in table_class(name)._meta.columns:
        types[column._meta.db_column_name] = type(column)
    return types


@lru_cache(maxsize=4096)  # ~1 MB: ids named again within a batch stay in it
def _parse_uuid(text: str) -> uuid.UUID:
    return uuid.UUID(text)


def as_uuid(value: Any) -> uuid.UUID:
    """``value`` (a UUID, or its text) as a UUID. A push names the same ids again and again
    (the box, a customer's, a month's), so parsed ones are remembered: parsing was ~8% of
    central's time in a push of 10,000 payments."""
    if type(value) is str:
        return _parse_uuid(value)
    return value if isinstance(value, uuid.UUID) else _parse_uuid(str(value))


def _stamp(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    stamp = dt.datetime.fromisoformat(str(value))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def _date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


_DECODERS: dict[type, Any] = {
    UUID: as_uuid,
    ForeignKey: as_uuid,
    Timestamptz: _stamp,
    Date: _date,
    Boolean: bool,
    Integer: int,
    BigInt: int,
    JSON: _json,
}


@cache
def decoders(table: str) -> dict[str, Any]:
    """Per column of ``table``, the function turning a JSON value into the driver's (perf: one
    lookup per field of a push instead of a chain of type tests)."""
    return {column: _DECODERS.get(kind, str) for column, kind in column_types(table).items()}


def decode(table: str, column: str, value: Any) -> Any:
    """A value from a change's JSON, as the driver takes it for ``table.column``."""
    if value is None:
        return None
    return decoders(table).get(column, str)(value)


def same(table: str, column: str, a: Any, b: Any) -> bool:
    return decode(table, column, a) == decode(table, column, b)


def to_json(value: Any) -> Any:
    """A database value as plain JSON (for snapshots and conflict records)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def columns_of(table: str) -> list[str]:
    from appliance.migrations.ctvms_0009_sync import SYNCED

    return SYNCED[table][0].split()
