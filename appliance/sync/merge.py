"""Applying changes from other nodes (central applying a box's push, a box applying a pull).

Runs inside the caller's transaction with the capture triggers switched off, one savepoint per
change: a change that cannot be applied (a duplicate invoice number, a missing parent row, a
schema this node cannot read) rolls back alone and goes to the dead letters with the reason; the
rest of the batch goes on. A run of inserts into append-only tables is tried first with one
statement per table inside one savepoint, and change by change when that fails; the batch's known
change ids are read in one query, and its log rows (with their feed numbers, in apply order) are
written together at the end.

- Append-only tables (payments, allocations, reversals, complaint events): insert if absent.
- The others merge per field: a field takes the remote value when the remote change's
  (HLC, node id) beats the newest change this node knows for that field. When the remote edit
  started from another value than the one here (its ``old`` differs) both sides edited the field
  concurrently: the loser is kept in ``sync_conflicts`` for the owner.
- Rows two nodes created for the same thing (a customer's credit account; a month's charge of
  a connection both created) have different ids: the later one becomes an alias of the row
  here and every change naming it is translated first, so both merge into one row. (A month's
  charge of one connection has the same id everywhere: ``db.derived_id``.)
"""

# Table and column names in SQL text come from fixed lists (codec.MODES, the migration's
# SYNCED), never from a request; values are always bound parameters.
# ruff: noqa: S608

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from appliance.sync import codec
from appliance.sync.state import ACCEPTED_VERSIONS, SCHEMA_VERSION
from appliance.sync.tables import SyncChange, SyncConflict, SyncDeadLetter

log = logging.getLogger(__name__)

NATURAL_KEYS = {
    "billing_charges": ("connection", "year", "month"),
    "billing_accounts": ("customer",),
    "billing_connections": ("connection",),
    "connections": ("customer", "service"),
}
# Columns that reference rows which can be aliases.
ALIASED_REFERENCES = {"charge": "billing_charges", "connection": "connections"}


class Rejected(Exception):
    """A change this node cannot apply; the message is the dead letter's reason."""


@dataclass
class Outcome:
    applied: int = 0
    duplicates: int = 0
    dead: int = 0
    conflicts: int = 0
    newer_schema: bool = False
    customers: set[Any] = field(default_factory=set)
    billing_customers: set[Any] = field(default_factory=set)


def _in_ids(column: str, ids: list[Any]) -> tuple[str, list[Any]]:
    """``column`` among ``ids`` (a uuid column), and the parameters: on PostgreSQL one array
    parameter, on SQLite one parameter per id (perf: Piccolo builds a query of 500 parameters
    in Python, a sixth of central's time in a push)."""
    from appliance import db

    if db.is_sqlite():
        return f"{column} IN ({', '.join('{}' for _ in ids)})", list(ids)
    return f"{column} = ANY({{}}::uuid[])", [list(ids)]


async def _raw(sql: str, *args: Any) -> list[dict[str, Any]]:
    return await SyncChange.raw(sql, *args)


async def _alias(remote_id: Any) -> Any:
    rows = await _raw("SELECT local_id FROM sync_aliases WHERE remote_id = {}", remote_id)
    return rows[0]["local_id"] if rows else None


async def _translate(change: dict[str, Any]) -> None:
    table = change["table_name"]
    if table in NATURAL_KEYS and (local := await _alias(change["row_id"])):
        change["row_id"] = str(local)
        if "id" in change["data"]:
            change["data"]["id"] = str(local)
    for column, target in ALIASED_REFERENCES.items():
        value = change["data"].get(column)
        if value and target in NATURAL_KEYS and (local := await _alias(value)):
            change["data"][column] = str(local)


async def _select_row(table: str, row_id: Any) -> dict[str, Any] | None:
    rows = await _raw(f'SELECT * FROM "{table}" WHERE id = {{}}', row_id)
    return rows[0] if rows else None


async def _insert(table: str, values: dict[str, Any]) -> None:
    names = ", ".join(f'"{k}"' for k in values)
    marks = ", ".join("{}" for _ in values)
    await _raw(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', *values.values())


async def _update(table: str, row_id: Any, values: dict[str, Any]) -> None:
    sets = ", ".join(f'"{k}" = {{}}' for k in values)
    await _raw(f'UPDATE "{table}" SET {sets} WHERE id = {{}}', *values.values(), row_id)


async def _natural_twin(table: str, values: dict[str, Any]) -> Any:
    keys = NATURAL_KEYS.get(table)
    if not keys or any(k not in values for k in keys):
        return None
    where = " AND ".join(f'"{k}" = {{}}' for k in keys)
    rows = await _raw(f'SELECT id FROM "{table}" WHERE {where}', *(values[k] for k in keys))
    return rows[0]["id"] if rows else None


def _values(table: str, data: dict[str, Any]) -> dict[str, Any]:
    decoders = codec.decoders(table)
    values = {k: None if v is None else decoders[k](v) for k, v in data.items() if k in decoders}
    for column in codec.LOCAL_REFERENCES.get(table, ()):
        if column in values:
            values[column] = None
    return values


RECENT_CHANGES = 100


async def _field_stamps(
    table: str, row_id: Any, change_id: Any, fields: set[str], batch: _Batch | None = None
) -> dict[str, tuple[int, str]]:
    """The newest (HLC, node) this node knows for each of ``fields`` of a row.

    The row's newest changes are read first and usually name every field asked for; only when
    they do not is the row's whole history read, so a row edited thousands of times does not
    cost thousands of rows per change. Changes of the batch not yet written to the log are
    written first when one of them is of this row."""
    if batch is not None and (table, _key(row_id)) in batch.pending_rows:
        await batch.flush()
    query = (
        "SELECT hlc, node_id, data FROM sync_changes WHERE table_name = {} AND row_id = {} "
        "AND id <> {} AND origin IN ('local', 'remote') ORDER BY hlc DESC"
    )
    stamps: dict[str, tuple[int, str]] = {}
    for limit in (f" LIMIT {RECENT_CHANGES}", ""):
        rows = await _raw(query + limit, table, row_id, change_id)
        for row in rows:
            stamp = (int(row["hlc"]), str(row["node_id"]))
            for name in json.loads(row["data"]):
                if name not in stamps or stamp > stamps[name]:
                    stamps[name] = stamp
        if fields <= set(stamps) or len(rows) < RECENT_CHANGES:
            break
    return stamps


def _decide(
    table: str,
    row: dict[str, Any],
    values: dict[str, Any],
    stamps: dict[str, tuple[int, str]],
    remote: tuple[int, str],
    old: dict[str, Any],
) -> tuple[dict[str, Any], list[SyncConflict]]:
    """The fields of ``values`` that win over ``row``'s (the remote stamp beats the newest this
    node knows for the field), and the concurrent edits worth the owner's time: a field the
    remote edit started from another value than the one here."""
    updates: dict[str, Any] = {}
    conflicts: list[SyncConflict] = []
    for name, value in values.items():
        current = row.get(name)
        if codec.same(table, name, current, value):
            continue
        local = stamps.get(name, (0, ""))
        remote_wins = remote > local
        if remote_wins:
            updates[name] = value
        concurrent = name in old and not codec.same(table, name, old[name], current)
        if concurrent and name not in codec.QUIET_FIELDS:
            winner, loser = (value, remote), (current, local)
            if not remote_wins:
                winner, loser = loser, winner
            conflicts.append(_conflict(table, row["id"], name, winner, loser))
    return updates, conflicts


async def _merge_fields(
    change: dict[str, Any], row: dict[str, Any], outcome: Outcome, batch: _Batch | None = None
) -> None:
    table = change["table_name"]
    values = _values(table, change["data"])
    values.pop("id", None)
    stamps = await _field_stamps(table, row["id"], change["id"], set(values), batch)
    remote = (int(change["hlc"]), str(change["node_id"]))
    old = change.get("old") or {}
    updates, conflicts = _decide(table, row, values, stamps, remote, old)
    if conflicts:
        await SyncConflict.insert(*conflicts)
        outcome.conflicts += len(conflicts)
    if updates:
        await _update(table, row["id"], updates)


async def _apply_row(
    change: dict[str, Any], outcome: Outcome, *, central: bool, batch: _Batch | None = None
) -> bool:
    """Apply one change; False when it is only recorded (nothing to write here)."""
    table = change["table_name"]
    if table not in codec.MODES:
        raise Rejected(f"unknown table {table!r}")
    if table == "outbox":
        if central:
            await _mail_status(change)
        return False
    await _translate(change)
    row = await _select_row(table, change["row_id"])
    if row is None:
        if change["op"] != "insert":
            raise Rejected("an update of a row this node does not have")
        values = _values(table, change["data"])
        twin = await _natural_twin(table, values)
        if twin is not None:
            await _raw(
                "INSERT INTO sync_aliases (table_name, remote_id, local_id) VALUES ({}, {}, {})",
                table,
                change["row_id"],
                twin,
            )
            change["row_id"] = str(twin)
            change["data"]["id"] = str(twin)
            row = await _select_row(table, twin)
            if codec.MODES[table] == codec.MERGE and row is not None:
                await _merge_fields(change, row, outcome, batch)
            return True
        await _insert(table, values)
        return True
    if codec.MODES[table] == codec.APPEND:
        return True
    await _merge_fields(change, row, outcome, batch)
    return True


async def _mail_status(change: dict[str, Any]) -> None:
    data = change["data"]
    values = {
        k: codec.decode("outbox", k, data[k])
        for k in ("kind", "to_addr", "status", "attempts", "last_error", "created_at", "sent_at")
        if k in data
    }
    if not await _raw("SELECT 1 AS x FROM sync_mail_status WHERE id = {}", change["row_id"]):
        await _insert(
            "sync_mail_status",
            {"id": codec.as_uuid(change["row_id"]), "office_code": change["office_code"]},
        )
    if values:
        await _update("sync_mail_status", codec.as_uuid(change["row_id"]), values)


_RECORD_COLUMNS = (
    "id, seq, hlc, node_id, office_code, table_name, row_id, customer_id, op, data, old, "
    "schema_version, sent, origin, feed_seq"
)


def _record_values(change: dict[str, Any], *, origin: str) -> list[Any]:
    """The change's row in ``sync_changes`` without its feed number (the last column)."""
    return [
        codec.as_uuid(change["id"]),
        int(change["seq"]),
        int(change["hlc"]),
        codec.as_uuid(change["node_id"]),
        change.get("office_code") or "",
        change["table_name"],
        codec.as_uuid(change["row_id"]),
        codec.as_uuid(change["customer_id"]) if change.get("customer_id") else None,
        change["op"],
        orjson.dumps(change["data"]).decode(),  # perf: 5-10x json.dumps on a push's payments
        orjson.dumps(change.get("old") or {}).decode(),
        int(change.get("schema_version") or SCHEMA_VERSION),
        True,
        origin,
    ]


def _key(value: Any) -> str:
    """An id as text, the same whichever form (UUID, text) it comes in."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if (
        isinstance(value, str)
        and len(value) == 36
        and value[8] == value[13] == value[18] == value[23] == "-"
        and value == value.lower()
    ):
        return value  # already the canonical form (perf: most ids of a push)
    try:
        return str(codec.as_uuid(value))
    except ValueError:
        return str(value)


async def _execute_many(sql: str, rows: list[list[Any]]) -> None:
    """Run one statement (``{}`` placeholders) once per row of parameters, on the current
    transaction's connection: asyncpg pipelines them in one round trip, sqlite3 loops in C.
    The drivers get the same values Piccolo's own queries pass them."""
    if not rows:
        return
    from appliance import db

    eng = db.engine()
    transaction = eng.current_transaction.get()
    if transaction is None:
        raise RuntimeError("_execute_many runs inside a transaction")
    if db.is_sqlite():
        await transaction.connection.executemany(sql.replace("{}", "?"), rows)
        return
    parts = sql.split("{}")
    numbered = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], start=1))
    await transaction.connection.executemany(numbered, rows)


async def _insert_many(table: str, names: list[str], rows: list[list[Any]]) -> None:
    """Insert ``rows`` (values in the order of ``names``) in the current transaction: on
    PostgreSQL with COPY (binary, a fraction of an INSERT's cost per row; triggers and
    constraints apply as for INSERT), on SQLite with executemany."""
    from appliance import db

    if not rows:
        return
    if not db.is_sqlite():
        transaction = db.engine().current_transaction.get()
        if transaction is None:
            raise RuntimeError("_insert_many runs inside a transaction")
        await transaction.connection.copy_records_to_table(
            table, records=[tuple(row) for row in rows], columns=list(names)
        )
        return
    columns = ", ".join(f'"{k}"' for k in names)
    marks = ", ".join("{}" for _ in names)
    await _execute_many(f'INSERT INTO "{table}" ({columns}) VALUES ({marks})', rows)


async def insert_absent(table: str, rows: list[dict[str, Any]]) -> int:
    """Insert the ``rows`` (decoded values by column) whose id this node lacks, inside the
    caller's transaction: one read for the ids it has and one bulk insert per set of columns,
    as a box's bootstrap writes central's snapshot page by page. How many were inserted."""
    if not rows:
        return 0
    have: set[str] = set()
    for chunk in _in_chunks([r["id"] for r in rows]):
        where, args = _in_ids("id", chunk)
        have |= {
            _key(r["id"]) for r in await _raw(f'SELECT id FROM "{table}" WHERE {where}', *args)
        }
    groups: dict[tuple[str, ...], list[list[Any]]] = {}
    for row in rows:
        if _key(row["id"]) not in have:
            have.add(_key(row["id"]))
            groups.setdefault(tuple(row), []).append(list(row.values()))
    for names, values in groups.items():
        await _insert_many(table, list(names), values)
    return sum(len(v) for v in groups.values())


class _Batch:
    """The log rows of a batch's applied changes, written together: feed numbers taken in one
    statement for all of them, in apply order, and the rows in multi-row INSERTs.

    A change whose merge reads the log of a row with a change still pending writes them first
    (``flush``). When that happens inside a change's savepoint and the change then rolls back,
    the flushed rows (and the feed numbers they took) roll back with it: they are pending again
    (``rolled_back``) and written by the next flush."""

    def __init__(self, *, central: bool) -> None:
        self.central = central
        self.pending: list[tuple[list[Any], bool]] = []
        self.pending_rows: set[tuple[str, str]] = set()
        self.flushed_in_savepoint: list[tuple[list[Any], bool]] = []

    def add(self, change: dict[str, Any], *, origin: str, feed: bool) -> None:
        self.pending.append((_record_values(change, origin=origin), feed))
        self.pending_rows.add((change["table_name"], _key(change["row_id"])))

    def savepoint_started(self) -> None:
        self.flushed_in_savepoint = []

    def rolled_back(self) -> None:
        if self.flushed_in_savepoint:
            self.pending = self.flushed_in_savepoint + self.pending
            self.pending_rows |= {(v[5], _key(v[6])) for v, _feed in self.flushed_in_savepoint}
            self.flushed_in_savepoint = []

    async def flush(self) -> None:
        if not self.pending:
            return
        records, self.pending, self.pending_rows = self.pending, [], set()
        wanted = sum(1 for _values, feed in records if feed)
        number = 0
        if wanted:
            rows = await _raw(
                "UPDATE sync_state SET feed_seq = feed_seq + {} WHERE key = 'local' "
                "RETURNING feed_seq",
                wanted,
            )
            number = int(rows[0]["feed_seq"]) - wanted
        values = []
        for record, feed in records:
            feed_seq = None
            if feed:
                number += 1
                feed_seq = number
            values.append([*record, feed_seq])
        await _insert_many("sync_changes", [c.strip() for c in _RECORD_COLUMNS.split(",")], values)
        self.flushed_in_savepoint += records


async def dead_letter(change: dict[str, Any], reason: str) -> None:
    row_id = change.get("row_id")
    await SyncDeadLetter.insert(
        SyncDeadLetter(
            change_id=codec.as_uuid(change["id"]),
            node_id=codec.as_uuid(change["node_id"]),
            office_code=change.get("office_code") or "",
            table_name=str(change.get("table_name") or ""),
            row_id=codec.as_uuid(row_id) if row_id else None,
            change=json.dumps(change, default=str),
            reason=reason,
        )
    )


async def _known_ids(changes: list[dict[str, Any]]) -> set[str]:
    """The ids of ``changes`` this node already has (applied or dead)."""
    ids = list(dict.fromkeys(c["id"] for c in changes))
    known_ids: set[str] = set()
    step = 500
    for start in range(0, len(ids), step):
        where, args = _in_ids("id", ids[start : start + step])
        rows = await _raw(f"SELECT id FROM sync_changes WHERE {where}", *args)
        known_ids |= {_key(r["id"]) for r in rows}
    return known_ids


def _fast_candidate(change: dict[str, Any]) -> bool:
    """An insert into an append-only table in a schema this node reads: the batch's run of
    them may be inserted together (``_apply_appends``)."""
    table = change.get("table_name")
    return (
        codec.MODES.get(table) == codec.APPEND
        and change.get("op") == "insert"
        and int(change.get("schema_version") or SCHEMA_VERSION) in ACCEPTED_VERSIONS
        and int(change.get("schema_version") or SCHEMA_VERSION) <= SCHEMA_VERSION
        and isinstance(change.get("data"), dict)
    )


async def _insert_appends(
    run: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[list[Any]]] | None:
    """``_apply_appends``'s work (in its savepoint): the translated changes and their log rows,
    or None when the run cannot be inserted at once."""
    references: set[str] = set()
    for change in run:
        for column, target in ALIASED_REFERENCES.items():
            value = change["data"].get(column)
            if value and target in NATURAL_KEYS:
                references.add(_key(value))
    aliases: dict[str, str] = {}
    if references:
        where, args = _in_ids("remote_id", [codec.as_uuid(r) for r in references])
        rows = await _raw(f"SELECT remote_id, local_id FROM sync_aliases WHERE {where}", *args)
        aliases = {_key(r["remote_id"]): str(r["local_id"]) for r in rows}
    translated: list[dict[str, Any]] = []
    for change in run:
        data = dict(change["data"])
        for column, target in ALIASED_REFERENCES.items():
            value = data.get(column)
            if value and target in NATURAL_KEYS and (local := aliases.get(_key(value))):
                data[column] = local
        translated.append({**change, "data": data})
    by_table: dict[str, list[str]] = {}
    for change in translated:
        by_table.setdefault(change["table_name"], []).append(_key(change["row_id"]))
    present: set[tuple[str, str]] = set()
    for table, row_ids in by_table.items():
        where, args = _in_ids("id", [codec.as_uuid(r) for r in dict.fromkeys(row_ids)])
        rows = await _raw(f'SELECT id FROM "{table}" WHERE {where}', *args)
        present |= {(table, _key(r["id"])) for r in rows}
    # Rows to insert, in the run's order; a row inserted earlier in the run is present.
    inserts: list[tuple[int, str, dict[str, Any]]] = []
    position: dict[str, int] = {}
    for index, change in enumerate(translated):
        table, row_key = change["table_name"], _key(change["row_id"])
        if (table, row_key) in present:
            continue
        present.add((table, row_key))
        inserts.append((index, table, _values(table, change["data"])))
        position[row_key] = index
    for index, _table, values in inserts:
        for name, value in values.items():
            if (
                name != "id"
                and isinstance(value, uuid.UUID)
                and position.get(str(value), -1) > index
            ):
                return None  # a child before its parent: one by one, as before
    records = [_record_values(c, origin="remote") for c in translated]
    # Parents' tables first (codec.ORDER), one statement per table and set of columns.
    of_table: dict[str, list[dict[str, Any]]] = {}
    for _index, name, values in inserts:
        of_table.setdefault(name, []).append(values)
    groups: dict[tuple[str, tuple[str, ...]], list[list[Any]]] = {}
    for table in codec.ORDER:
        for values in of_table.get(table, ()):
            groups.setdefault((table, tuple(values)), []).append(list(values.values()))
    for (table, names), rows_of in groups.items():
        await _insert_many(table, list(names), rows_of)
    return translated, records


async def _apply_appends(run: list[dict[str, Any]], outcome: Outcome, batch: _Batch) -> bool:
    """Apply a run of append-only inserts with one statement per table (and set of columns)
    inside a savepoint, as applying them one by one would: a row already here is left alone,
    references to aliases are translated. False, with nothing written, when that cannot be
    done at once (a child before its parent in the run, any error): the caller then applies
    the run change by change, so a bad change goes alone to the dead letters."""
    await _raw("SAVEPOINT sync_appends")
    try:
        prepared = await _insert_appends(run)
    except Exception:  # one of them cannot be applied: the caller goes one by one
        prepared = None
    if prepared is None:
        await _raw("ROLLBACK TO SAVEPOINT sync_appends")
        await _raw("RELEASE SAVEPOINT sync_appends")
        return False
    await _raw("RELEASE SAVEPOINT sync_appends")
    translated, records = prepared
    feed = batch.central
    for change, done, record in zip(run, translated, records, strict=True):
        change["data"] = done["data"]
        batch.pending.append((record, feed))
        batch.pending_rows.add((change["table_name"], _key(change["row_id"])))
        outcome.applied += 1
        if change.get("customer_id"):
            outcome.customers.add(change["customer_id"])
            if change["table_name"] in codec.BILLING_TABLES:
                outcome.billing_customers.add(change["customer_id"])
    return True


# -- runs of field merges and mail statuses ----------------------------------------------------


def _merge_candidate(change: dict[str, Any], *, central: bool) -> bool:
    """An update of a merged table (or, at central, a box's mail status) in a schema this node
    reads: the batch's run of them may be applied together (``_apply_merges``)."""
    table = change.get("table_name")
    version = int(change.get("schema_version") or SCHEMA_VERSION)
    if not (
        version in ACCEPTED_VERSIONS
        and version <= SCHEMA_VERSION
        and isinstance(change.get("data"), dict)
        and codec.MODES.get(table) == codec.MERGE
    ):
        return False
    if table == "outbox":
        return central
    return change.get("op") == "update"


def _in_chunks(ids: list[Any], step: int = 500) -> list[list[Any]]:
    return [ids[start : start + step] for start in range(0, len(ids), step)]


async def _aliases_of(keys: set[str]) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for chunk in _in_chunks([codec.as_uuid(k) for k in keys]):
        where, args = _in_ids("remote_id", chunk)
        rows = await _raw(f"SELECT remote_id, local_id FROM sync_aliases WHERE {where}", *args)
        aliases |= {_key(r["remote_id"]): str(r["local_id"]) for r in rows}
    return aliases


def _translated(change: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    """``_translate`` with the aliases read beforehand, on a copy."""
    change = {**change, "data": dict(change["data"])}
    table = change["table_name"]
    if table in NATURAL_KEYS and (local := aliases.get(_key(change["row_id"]))):
        change["row_id"] = local
        if "id" in change["data"]:
            change["data"]["id"] = local
    for column, target in ALIASED_REFERENCES.items():
        value = change["data"].get(column)
        if value and target in NATURAL_KEYS and (local := aliases.get(_key(value))):
            change["data"][column] = local
    return change


def _alias_keys(changes: list[dict[str, Any]]) -> set[str]:
    keys: set[str] = set()
    for change in changes:
        if change["table_name"] in NATURAL_KEYS:
            keys.add(_key(change["row_id"]))
        for column, target in ALIASED_REFERENCES.items():
            value = change["data"].get(column)
            if value and target in NATURAL_KEYS:
                keys.add(_key(value))
    return keys


async def _rows_of(table: str, keys: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for chunk in _in_chunks([codec.as_uuid(k) for k in dict.fromkeys(keys)]):
        where, args = _in_ids("id", chunk)
        rows = await _raw(f'SELECT * FROM "{table}" WHERE {where}', *args)
        found |= {_key(r["id"]): r for r in rows}
    return found


async def _stamps_of(table: str, keys: list[str]) -> dict[str, tuple[dict, int]]:
    """Per row: the newest (HLC, node) of each field in its last ``RECENT_CHANGES`` changes,
    and how many changes that read (``_field_stamps`` for many rows in one query each 500)."""
    stamps: dict[str, tuple[dict[str, tuple[int, str]], int]] = {}
    for chunk in _in_chunks([codec.as_uuid(k) for k in dict.fromkeys(keys)]):
        where, args = _in_ids("row_id", chunk)
        rows = await _raw(
            "SELECT row_id, hlc, node_id, data FROM ("
            "SELECT row_id, hlc, node_id, data, "
            "ROW_NUMBER() OVER (PARTITION BY row_id ORDER BY hlc DESC) AS recent "
            f"FROM sync_changes WHERE table_name = {{}} AND {where} "
            "AND origin IN ('local', 'remote')) AS newest "
            f"WHERE recent <= {RECENT_CHANGES}",
            table,
            *args,
        )
        for row in rows:
            fields, count = stamps.get(_key(row["row_id"]), ({}, 0))
            stamp = (int(row["hlc"]), str(row["node_id"]))
            for name in orjson.loads(row["data"]):
                if name not in fields or stamp > fields[name]:
                    fields[name] = stamp
            stamps[_key(row["row_id"])] = (fields, count + 1)
    return stamps


def _conflict(table: str, row_id: Any, name: str, winner: tuple, loser: tuple) -> SyncConflict:
    def node(stamp: tuple[int, str]) -> uuid.UUID:
        return uuid.UUID(stamp[1]) if stamp[1] else uuid.UUID(int=0)

    return SyncConflict(
        table_name=table,
        row_id=row_id,
        field=name,
        winner_value=json.dumps(codec.to_json(winner[0])),
        winner_hlc=winner[1][0],
        winner_node=node(winner[1]),
        loser_value=json.dumps(codec.to_json(loser[0])),
        loser_hlc=loser[1][0],
        loser_node=node(loser[1]),
    )


async def _merge_run(
    run: list[dict[str, Any]], outcome: Outcome, batch: _Batch
) -> list[dict[str, Any]]:
    """``_apply_merges``'s work (in its savepoint): the translated changes applied, a prefix
    of ``run`` that ends before the first change whose row is not here."""
    aliases = await _aliases_of(_alias_keys(run))
    translated = [_translated(c, aliases) for c in run]
    by_table: dict[str, list[str]] = {}
    for change in translated:
        by_table.setdefault(change["table_name"], []).append(_key(change["row_id"]))
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for table, keys in by_table.items():
        rows |= {(table, k): r for k, r in (await _rows_of(table, keys)).items()}
    done: list[dict[str, Any]] = []
    for change in translated:
        if (change["table_name"], _key(change["row_id"])) not in rows:
            break  # an update of a row this node does not have: one by one, to the dead letters
        done.append(change)
    if not done:
        return done
    if any((c["table_name"], _key(c["row_id"])) in batch.pending_rows for c in done):
        await batch.flush()
    stamps: dict[tuple[str, str], tuple[dict, int]] = {}
    for table in {c["table_name"] for c in done}:
        keys = [_key(c["row_id"]) for c in done if c["table_name"] == table]
        stamps |= {(table, k): v for k, v in (await _stamps_of(table, keys)).items()}
    updates: dict[tuple[str, str], dict[str, Any]] = {}
    conflicts: list[SyncConflict] = []
    for change in done:
        table, key = change["table_name"], _key(change["row_id"])
        row = rows[(table, key)]
        values = _values(table, change["data"])
        values.pop("id", None)
        fields, count = stamps.get((table, key), ({}, 0))
        if count >= RECENT_CHANGES and not set(values) <= set(fields):
            older = await _field_stamps(table, row["id"], change["id"], set(values))
            fields = {
                name: max(stamp, fields.get(name, stamp)) for name, stamp in older.items()
            } | {name: stamp for name, stamp in fields.items() if name not in older}
        remote = (int(change["hlc"]), str(change["node_id"]))
        won, found = _decide(table, row, values, fields, remote, change.get("old") or {})
        row.update(won)
        if won:
            updates.setdefault((table, key), {}).update(won)
        conflicts += found
        outcome.conflicts += len(found)
        # What the log would say of this row once this change is written to it.
        fields = dict(fields)
        for name in change["data"]:
            if name not in fields or remote > fields[name]:
                fields[name] = remote
        stamps[(table, key)] = (fields, count + 1)
    statements: dict[tuple[str, tuple[str, ...]], list[list[Any]]] = {}
    for (table, key), values in updates.items():
        names = tuple(values)
        statements.setdefault((table, names), []).append(
            [*values.values(), rows[(table, key)]["id"]]
        )
    for (table, names), params in statements.items():
        sets = ", ".join(f'"{name}" = {{}}' for name in names)
        await _execute_many(f'UPDATE "{table}" SET {sets} WHERE id = {{}}', params)
    if conflicts:
        await SyncConflict.insert(*conflicts)
    return done


MAIL_FIELDS = ("kind", "to_addr", "status", "attempts", "last_error", "created_at", "sent_at")


async def _mail_statuses(run: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``_mail_status`` for a run of a box's outbox changes: each message's fields as the run
    leaves them, one upsert per set of fields."""
    final: dict[str, dict[str, Any]] = {}
    for change in run:
        key = _key(change["row_id"])
        values = final.setdefault(key, {"office_code": change["office_code"]})
        values |= {
            k: codec.decode("outbox", k, change["data"][k])
            for k in MAIL_FIELDS
            if k in change["data"]
        }
    groups: dict[tuple[str, ...], list[list[Any]]] = {}
    for key, values in final.items():
        groups.setdefault(tuple(values), []).append([codec.as_uuid(key), *values.values()])
    for names, params in groups.items():
        columns = ", ".join(f'"{n}"' for n in ("id", *names))
        marks = ", ".join("{}" for _ in range(len(names) + 1))
        # A message seen before keeps its office (as _mail_status never changes it).
        sets = ", ".join(f'"{n}" = excluded."{n}"' for n in names if n != "office_code")
        action = f"DO UPDATE SET {sets}" if sets else "DO NOTHING"
        await _execute_many(
            f"INSERT INTO sync_mail_status ({columns}) VALUES ({marks}) ON CONFLICT (id) {action}",
            params,
        )
    return run


async def _apply_merges(
    run: list[dict[str, Any]], outcome: Outcome, batch: _Batch, *, central: bool
) -> tuple[int, bool]:
    """Apply a run of field merges (or, at central, mail statuses) with a few statements for
    the whole run, inside a savepoint, as applying them one by one would: the number of
    changes applied from the start of the run, and whether it failed. Nothing is written when
    none could be (the first change's row is missing) or on any error; the caller then goes
    one by one, the first change alone or the whole run."""
    await _raw("SAVEPOINT sync_merges")
    batch.savepoint_started()
    conflicts_before = outcome.conflicts
    failed = False
    try:
        if run[0]["table_name"] == "outbox":
            done = await _mail_statuses(run)
        else:
            done = await _merge_run(run, outcome, batch)
    except Exception:  # one of them cannot be applied: the caller goes one by one
        log.debug("sync merge run falls back to one change at a time", exc_info=True)
        done, failed = [], True
    if not done:
        outcome.conflicts = conflicts_before  # counted again when applied one by one
        await _raw("ROLLBACK TO SAVEPOINT sync_merges")
        await _raw("RELEASE SAVEPOINT sync_merges")
        batch.rolled_back()
        return 0, failed
    await _raw("RELEASE SAVEPOINT sync_merges")
    for change, applied in zip(run, done, strict=False):
        change["row_id"], change["data"] = applied["row_id"], applied["data"]
        feed = central and change["table_name"] != "outbox"
        batch.pending.append((_record_values(change, origin="remote"), feed))
        batch.pending_rows.add((change["table_name"], _key(change["row_id"])))
        outcome.applied += 1
        if change["table_name"] != "outbox" and change.get("customer_id"):
            outcome.customers.add(change["customer_id"])
    return len(done), False


def _run_of(
    changes: list[dict[str, Any]], start: int, known_ids: set[str], belongs: Any
) -> tuple[list[dict[str, Any]], int]:
    """The run from ``start`` of changes that ``belongs(change)`` admits, new and distinct, at
    most 1,000: the changes and the index after the last."""
    run: list[dict[str, Any]] = []
    keys: set[str] = set()
    end = start
    while end < len(changes) and len(run) < 1000:
        change = changes[end]
        key = _key(change["id"])
        if not belongs(change) or key in known_ids or key in keys:
            break
        run.append(change)
        keys.add(key)
        end += 1
    return run, end


def _in_runs(changes: list[dict[str, Any]], *, central: bool) -> list[dict[str, Any]]:
    """``changes`` in an order that forms long runs, with the same result as theirs.

    A payment taken at the counter is a payment, an allocation, a month paid, maybe an expiry
    date and a receipt e-mail: one change of each kind, so in seq order no two neighbours could
    be applied together. Between two changes that must stay where they are (an insert into a
    merged table, which later changes may need as their parent; anything in another schema),
    the append-only inserts go first, then the field updates, then the mail statuses, each
    kind in its own order. That changes nothing that is applied: an append-only row needs only
    its parents, which come before the stretch; a field update depends only on the earlier
    changes of its own row, which are of its own kind; the mail statuses on nothing."""
    ordered: list[dict[str, Any]] = []
    appends: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    mail: list[dict[str, Any]] = []

    def close() -> None:
        ordered.extend(appends + updates + mail)
        appends.clear()
        updates.clear()
        mail.clear()

    for change in changes:
        if _fast_candidate(change):
            appends.append(change)
        elif _merge_candidate(change, central=central):
            (mail if change["table_name"] == "outbox" else updates).append(change)
        else:
            close()
            ordered.append(change)
    close()
    return ordered


async def apply_changes(changes: list[dict[str, Any]], *, central: bool) -> Outcome:
    """Apply ``changes`` inside the caller's transaction, in their order except where
    ``_in_runs`` may move one without changing the result."""
    outcome = Outcome()
    batch = _Batch(central=central)
    changes = _in_runs(changes, central=central)
    known_ids = await _known_ids(changes)
    one_by_one_until = 0
    index = 0
    while index < len(changes):
        change = changes[index]
        index += 1
        change_key = _key(change["id"])
        if change_key in known_ids:
            outcome.duplicates += 1
            continue
        if index > one_by_one_until and _fast_candidate(change):
            run, end = _run_of(changes, index - 1, known_ids, _fast_candidate)
            if len(run) > 1:
                if await _apply_appends(run, outcome, batch):
                    known_ids |= {_key(c["id"]) for c in run}
                    index = end
                    continue
                one_by_one_until = end
        if index > one_by_one_until and _merge_candidate(change, central=central):
            outbox = change["table_name"] == "outbox"
            run, end = _run_of(
                changes,
                index - 1,
                known_ids,
                # One kind per run: mail statuses, or the other field updates.
                lambda c, outbox=outbox: (
                    _merge_candidate(c, central=central) and (c["table_name"] == "outbox") == outbox
                ),
            )
            if len(run) > 1:
                applied, failed = await _apply_merges(run, outcome, batch, central=central)
                if applied:
                    known_ids |= {_key(c["id"]) for c in run[:applied]}
                    index += applied - 1
                    continue
                one_by_one_until = end if failed else index
        version = int(change.get("schema_version") or SCHEMA_VERSION)
        if version > SCHEMA_VERSION:
            outcome.newer_schema = True
            if not central:
                # A box cannot read it: stop here and keep the rest for after the update.
                break
        await _raw("SAVEPOINT sync_change")
        batch.savepoint_started()
        try:
            if version not in ACCEPTED_VERSIONS:
                raise Rejected(
                    f"schema version {version} is not accepted here "
                    f"(accepted: {', '.join(map(str, ACCEPTED_VERSIONS))})"
                )
            written = await _apply_row(change, outcome, central=central, batch=batch)
            feed = central and change["table_name"] != "outbox"
            record = _record_values(change, origin="remote")
            await _raw("RELEASE SAVEPOINT sync_change")
        except Exception as exc:  # any failure of one change dead-letters it
            await _raw("ROLLBACK TO SAVEPOINT sync_change")
            await _raw("RELEASE SAVEPOINT sync_change")
            batch.rolled_back()
            reason = exc.args[0] if isinstance(exc, Rejected) else f"{type(exc).__name__}: {exc}"
            log.warning(
                "sync change rejected",
                extra={"change": str(change["id"]), "table": change.get("table_name")},
            )
            await dead_letter(change, str(reason))
            batch.add(change, origin="dead", feed=False)
            known_ids.add(change_key)
            outcome.dead += 1
            continue
        batch.pending.append((record, feed))
        batch.pending_rows.add((change["table_name"], _key(change["row_id"])))
        known_ids.add(change_key)
        outcome.applied += 1
        if written and change.get("customer_id"):
            outcome.customers.add(change["customer_id"])
            if change["table_name"] in codec.BILLING_TABLES:
                outcome.billing_customers.add(change["customer_id"])
    await batch.flush()
    return outcome
