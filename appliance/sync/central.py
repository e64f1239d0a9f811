"""Central's side of sync: offices and enrollment, box credentials, push, pull, snapshot, and
the recomputation of balances when offices' payments meet."""

# Table and column names in SQL text come from fixed lists (codec.MODES, the migration's
# SYNCED), never from a request; values are always bound parameters.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import uuid
from collections import Counter
from typing import Any

import orjson

from appliance import clock
from appliance.db import new_id, write_transaction
from appliance.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from appliance.i18n import gettext as _
from appliance.sync import codec, hlc
from appliance.sync.merge import apply_changes
from appliance.sync.state import SCHEMA_VERSION, applying, now_ms, receive_stamp
from appliance.sync.tables import SyncBox, SyncChange, SyncOffice, SyncOverpayment

log = logging.getLogger(__name__)

ENROLL_CODE_HOURS = 72
MAX_BATCH = 1000
PULL_LIMIT = 500


class SyncRefused(Exception):
    """A push central refuses as a whole; ``body`` tells the box what to do."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error"))
        self.status = status
        self.body = body


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# -- offices and enrollment ------------------------------------------------------------------


def _check_code(code: str) -> str:
    code = str(code or "").strip().upper()
    if not (2 <= len(code) <= 6 and code.isascii() and code.isalnum()):
        raise ValidationFailed({"code": _("An office code has 2 to 6 capital letters or digits.")})
    return code


async def list_offices() -> list[dict[str, Any]]:
    offices = await SyncOffice.select().order_by(SyncOffice.code)
    boxes = await SyncBox.select().order_by(SyncBox.enrolled_at)
    for office in offices:
        office["boxes"] = [b for b in boxes if b["office_code"] == office["code"]]
        office["code_pending"] = bool(office["enroll_code_hash"]) and (
            office["enroll_expires_at"] is not None and office["enroll_expires_at"] > clock.now()
        )
    return offices


async def create_office(code: str, name: str) -> dict[str, Any]:
    """Register an office and hand out its first enrollment code."""
    code = _check_code(code)
    name = " ".join(str(name or "").split())
    if not name:
        raise ValidationFailed({"name": _("Enter the office's name.")})
    async with write_transaction():
        if await SyncOffice.exists().where(SyncOffice.code == code):
            raise ValidationFailed({"code": _("There is already an office with this code.")})
        await SyncOffice.insert(SyncOffice(code=code, name=name))
    return {"code": code, "name": name, "enroll_code": await new_enroll_code(code)}


async def new_enroll_code(office_code: str) -> str:
    """A one-time code a box of the office enrolls with (valid for three days)."""
    enroll_code = secrets.token_urlsafe(12)
    updated = (
        await SyncOffice.update(
            {
                SyncOffice.enroll_code_hash: _hash(enroll_code),
                SyncOffice.enroll_expires_at: clock.now() + dt.timedelta(hours=ENROLL_CODE_HOURS),
            }
        )
        .where(SyncOffice.code == office_code)
        .returning(SyncOffice.code)
    )
    if not updated:
        raise NotFound(_("There is no office with this code."))
    log.info("enrollment code issued", extra={"office": office_code})
    return enroll_code


async def enroll(enroll_code: str) -> dict[str, Any]:
    """Register a box with a one-time code: returns its node id and secret (shown once)."""
    digest = _hash(str(enroll_code or "").strip())
    async with write_transaction():
        offices = await SyncOffice.select().where(SyncOffice.enroll_code_hash == digest)
        if (
            not offices
            or not offices[0]["enroll_expires_at"]
            or (offices[0]["enroll_expires_at"] < clock.now())
        ):
            raise PermissionDenied(_("This enrollment code is unknown, used or expired."))
        office = offices[0]
        await SyncOffice.update(
            {SyncOffice.enroll_code_hash: "", SyncOffice.enroll_expires_at: None}
        ).where(SyncOffice.code == office["code"])
        node_id = uuid.uuid4()
        secret = secrets.token_urlsafe(32)
        # Every box of an office numbers invoices in a series of its own (see SyncState).
        ordinal = await SyncBox.count().where(SyncBox.office_code == office["code"]) + 1
        series = office["code"] if ordinal == 1 else f"{office['code']}-{ordinal}"
        await SyncBox.insert(
            SyncBox(node_id=node_id, office_code=office["code"], secret_hash=_hash(secret))
        )
    log.info("box enrolled", extra={"office": office["code"], "node": str(node_id)})
    return {
        "node_id": str(node_id),
        "secret": secret,
        "office_code": office["code"],
        "office_name": office["name"],
        "invoice_series": series,
    }


async def revoke_box(node_id: Any) -> None:
    updated = (
        await SyncBox.update({SyncBox.revoked_at: clock.now()})
        .where(SyncBox.node_id == node_id)
        .returning(SyncBox.node_id)
    )
    if not updated:
        raise NotFound(_("There is no such box."))
    log.info("box revoked", extra={"node": str(node_id)})


async def authenticate(header: str | None) -> dict[str, Any]:
    """The box behind an ``X-Ctvms-Box: <node id>:<secret>`` header, or SyncRefused."""
    node, _sep, secret = str(header or "").partition(":")
    try:
        node_id = uuid.UUID(node)
    except ValueError:
        raise SyncRefused(401, {"error": "unknown_box"}) from None
    rows = await SyncBox.select().where(SyncBox.node_id == node_id)
    if not rows or not hmac.compare_digest(rows[0]["secret_hash"], _hash(secret)):
        raise SyncRefused(401, {"error": "unknown_box"})
    if rows[0]["revoked_at"] is not None:
        raise SyncRefused(403, {"error": "revoked"})
    return rows[0]


# -- push --------------------------------------------------------------------------------------


def _check_origin(box: dict[str, Any], changes: list[dict[str, Any]]) -> None:
    for change in changes:
        if (
            str(change.get("node_id")) != str(box["node_id"])
            or (change.get("office_code") or "") != box["office_code"]
        ):
            raise SyncRefused(
                403,
                {
                    "error": "impersonation",
                    "detail": "a box may only push changes made by itself for its office",
                },
            )


async def _check_scope(box: dict[str, Any], changes: list[dict[str, Any]]) -> None:
    """A box's changes may only touch its own office's customers (and global rows)."""
    office = box["office_code"]
    refused = SyncRefused(
        403,
        {"error": "impersonation", "detail": "a box may only change its own office's customers"},
    )
    ids = set()
    for change in changes:
        if change.get("customer_id"):
            ids.add(codec.as_uuid(change["customer_id"]))
        if change.get("table_name") == "customers":
            ids.add(codec.as_uuid(change["row_id"]))
            if (change.get("data") or {}).get("office") not in (None, "", office):
                raise refused
    if not ids:
        return
    marks = ", ".join("{}" for _ in ids)
    rows = await SyncChange.raw(
        f"SELECT 1 AS x FROM customers WHERE id IN ({marks}) AND office NOT IN ('', {{}})",
        *ids,
        office,
    )
    if rows:
        raise refused


async def _fresh_changes(
    box: dict[str, Any], changes: list[dict[str, Any]], last_seq: int
) -> tuple[list[dict[str, Any]], bool]:
    """The changes after ``last_seq`` (in order, without a gap), and whether one of the others
    reuses a sequence number central has under another change id."""
    fresh: list[dict[str, Any]] = []
    for change in changes:
        seq = int(change["seq"])
        if seq <= last_seq:
            had = await SyncChange.raw(
                "SELECT id FROM sync_changes WHERE node_id = {} AND seq = {}",
                box["node_id"],
                seq,
            )
            if had and str(had[0]["id"]) == str(change["id"]):
                continue
            return [], True
        expected = last_seq + len(fresh) + 1
        if seq != expected:
            raise SyncRefused(409, {"error": "gap", "expected_seq": expected})
        fresh.append(change)
    return fresh, False


async def _apply_push(
    box: dict[str, Any], fresh: list[dict[str, Any]], central_now: int
) -> tuple[Any, int]:
    future = sum(1 for c in fresh if hlc.is_future(int(c["hlc"]), central_now))
    if not fresh:
        return None, future
    async with applying():
        outcome = await apply_changes(fresh, central=True)
        await receive_stamp(max(int(c["hlc"]) for c in fresh))
    # Central's own writes are logged, so the recomputed balances flow down.
    await recompute_balances(outcome.billing_customers)
    return outcome, future


# Below this many rows in its statistics a table is analyzed again once a push has written
# more rows to it than the statistics counted.
SMALL_TABLE_ROWS = 1000


async def refresh_small_statistics(written: dict[str, int]) -> None:
    """ANALYZE the tables a push wrote to while PostgreSQL still thinks they are (nearly) empty.

    A new central's payment tables are empty. The plans PostgreSQL caches per connection (the
    foreign-key checks' among them) are then sequential scans, and they stay cached while a box
    pushes thousands of rows: each check reads every row inserted so far, and a push of 10,000
    payments read 50 million rows. Fresh statistics invalidate those plans. Only a table that
    the statistics call small, and that this push (``written``: changes per table) or the
    writes since its last analysis outgrew, is analyzed: once the tables have grown this is
    one catalog query per push."""
    from appliance import db

    counts = {t: n for t, n in written.items() if t in codec.MODES and t != "outbox"}
    counts["sync_changes"] = sum(written.values())
    if written.get("outbox"):
        counts["sync_mail_status"] = written["outbox"]
    if db.is_sqlite():
        return
    names = sorted(counts)
    marks = ", ".join("{}" for _ in names)
    rows = await SyncChange.raw(
        "SELECT s.relname, c.reltuples, s.n_mod_since_analyze FROM pg_stat_user_tables s "
        "JOIN pg_class c ON c.oid = s.relid "
        f"WHERE s.schemaname = 'public' AND s.relname IN ({marks}) "
        f"AND c.reltuples < {SMALL_TABLE_ROWS}",
        *names,
    )
    for row in rows:
        name = str(row["relname"])
        known = max(float(row["reltuples"]), 0.0) + 100
        if name not in counts or max(counts[name], int(row["n_mod_since_analyze"])) <= known:
            continue
        try:  # the name is one of the fixed names above, never a request's text
            await SyncChange.raw(f'ANALYZE "{name}"')
        except Exception:  # statistics are an optimisation: the push has committed
            log.warning("sync could not analyze a table", extra={"table": name})


async def push(box: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """Apply one batch from ``box`` in one transaction; answer the last sequence central has."""
    try:
        changes = sorted(body.get("changes") or [], key=lambda c: int(c["seq"]))
    except (TypeError, ValueError, KeyError):
        raise SyncRefused(400, {"error": "malformed"}) from None
    if len(changes) > MAX_BATCH:
        raise SyncRefused(413, {"error": "batch_too_large", "max": MAX_BATCH})
    _check_origin(box, changes)
    await _check_scope(box, changes)
    central_now = now_ms()
    offset = central_now - int(body.get("now_ms") or central_now)
    async with write_transaction():
        rows = await SyncBox.raw(
            "SELECT last_seq FROM sync_boxes WHERE node_id = {} FOR UPDATE", box["node_id"]
        )
        last_seq = int(rows[0]["last_seq"])
        fresh, reused = await _fresh_changes(box, changes, last_seq)
        if reused:
            # The same sequence number with another change: an old backup or a clone. Counted
            # (and committed) though the batch is refused.
            await SyncBox.raw(
                "UPDATE sync_boxes SET identity_conflicts = identity_conflicts + 1, "
                "last_seen = {} WHERE node_id = {}",
                clock.now(),
                box["node_id"],
            )
        else:
            outcome, future = await _apply_push(box, fresh, central_now)
            new_last = last_seq + len(fresh)
            await SyncBox.update(
                {
                    SyncBox.last_seq: new_last,
                    SyncBox.last_seen: clock.now(),
                    SyncBox.clock_offset_ms: offset,
                    SyncBox.future_stamps: SyncBox.future_stamps + future,
                    SyncBox.schema_version: int(body.get("schema_version") or SCHEMA_VERSION),
                }
            ).where(SyncBox.node_id == box["node_id"])
    if not reused and fresh:
        await refresh_small_statistics(Counter(str(c["table_name"]) for c in fresh))
    if reused:
        log.warning("sync identity conflict", extra={"node": str(box["node_id"])})
        raise SyncRefused(409, {"error": "identity_conflict", "last_seq": last_seq})
    result = {
        "last_seq": new_last,
        "applied": outcome.applied if outcome else 0,
        "duplicates": len(changes) - len(fresh) + (outcome.duplicates if outcome else 0),
        "dead_letters": outcome.dead if outcome else 0,
        "conflicts": outcome.conflicts if outcome else 0,
        "future_stamps": future,
        "clock_offset_ms": offset,
        "schema_version": SCHEMA_VERSION,
    }
    log.info("sync push applied", extra={"node": str(box["node_id"]), **result})
    return result


# -- pull and snapshot -------------------------------------------------------------------------


def change_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "seq": int(row["seq"]),
        "hlc": int(row["hlc"]),
        "node_id": str(row["node_id"]),
        "office_code": row["office_code"],
        "table_name": row["table_name"],
        "row_id": str(row["row_id"]),
        "customer_id": str(row["customer_id"]) if row["customer_id"] else None,
        "op": row["op"],
        "data": orjson.loads(row["data"]),
        "old": orjson.loads(row["old"]),
        "schema_version": int(row["schema_version"]),
        "feed_seq": int(row["feed_seq"]) if row.get("feed_seq") is not None else None,
    }


async def pull(box: dict[str, Any], *, cursor: int, limit: int = PULL_LIMIT) -> dict[str, Any]:
    """Changes after ``cursor`` that concern the box's office, made elsewhere.

    Feed numbers are handed out under the ``sync_state`` row lock and kept until commit, so
    they become visible in order: a reader never sees 105 while 104 is still uncommitted.
    """
    limit = max(1, min(int(limit), PULL_LIMIT))
    # The top first: every feed number up to it has committed (see above), so rows are read
    # up to it and the cursor may move to it even when none of them concerns this box.
    top = int(
        (await SyncChange.raw("SELECT max(feed_seq) AS top FROM sync_changes"))[0]["top"] or 0
    )
    rows = await SyncChange.raw(
        "SELECT c.* FROM sync_changes c LEFT JOIN customers cu ON cu.id = c.customer_id "
        "WHERE c.feed_seq > {} AND c.feed_seq <= {} AND c.node_id <> {} AND c.origin <> 'dead' "
        "AND c.table_name <> 'outbox' AND coalesce(cu.office, '') IN ('', {}) "
        "ORDER BY c.feed_seq LIMIT {}",
        int(cursor),
        top,
        box["node_id"],
        box["office_code"],
        limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    new_cursor = int(rows[-1]["feed_seq"]) if more else max(int(cursor), top)
    await SyncBox.update({SyncBox.cursor: new_cursor, SyncBox.last_seen: clock.now()}).where(
        SyncBox.node_id == box["node_id"]
    )
    return {
        "changes": [change_out(r) for r in rows],
        "cursor": new_cursor,
        "more": more,
        "schema_version": SCHEMA_VERSION,
        "now_ms": now_ms(),
    }


async def own_changes(box: dict[str, Any], *, after_seq: int, limit: int = PULL_LIMIT) -> dict:
    """The box's own changes central has after ``after_seq`` (a restored box catching up)."""
    rows = await SyncChange.raw(
        "SELECT * FROM sync_changes WHERE node_id = {} AND seq > {} ORDER BY seq LIMIT {}",
        box["node_id"],
        int(after_seq),
        PULL_LIMIT if limit > PULL_LIMIT else limit,
    )
    return {"changes": [change_out(r) for r in rows], "last_seq": int(box["last_seq"])}


async def snapshot_page(
    box: dict[str, Any], *, table: str, after: str | None, limit: int = 1000
) -> dict[str, Any]:
    """One page of the office's rows of ``table`` (id order), for bootstrapping a box."""
    if table not in codec.MODES or table == "outbox":
        raise ValidationFailed({"table": _("This table is not part of a snapshot.")})
    columns = ", ".join(f't."{c}"' for c in codec.columns_of(table))
    scope = {
        "plans": "TRUE",
        "customers": "coalesce(t.office, '') IN ('', {office})",
        "billing_connections": "t.connection IN (SELECT n.id FROM connections n JOIN customers "
        "cu ON cu.id = n.customer WHERE coalesce(cu.office, '') IN ('', {office}))",
        "billing_allocations": "t.payment IN (SELECT p.id FROM billing_payments p JOIN "
        "customers cu ON cu.id = p.customer WHERE coalesce(cu.office, '') IN ('', {office}))",
        "billing_reversals": "t.payment IN (SELECT p.id FROM billing_payments p JOIN "
        "customers cu ON cu.id = p.customer WHERE coalesce(cu.office, '') IN ('', {office}))",
        "complaint_events": "t.complaint IN (SELECT m.id FROM complaints m JOIN customers cu "
        "ON cu.id = m.customer WHERE coalesce(cu.office, '') IN ('', {office}))",
    }.get(
        table,
        "t.customer IN (SELECT id FROM customers WHERE coalesce(office, '') IN ('', {office}))",
    )
    office = box["office_code"]
    where = scope.replace("{office}", "{}")
    args: list[Any] = [office] * where.count("{}")
    if after:
        where += " AND t.id > {}"
        args.append(uuid.UUID(after))
    limit = max(1, min(int(limit), 2000))
    rows = await SyncChange.raw(
        f'SELECT {columns} FROM "{table}" t WHERE {where} ORDER BY t.id LIMIT {limit}', *args
    )
    return {
        "table": table,
        "rows": [{k: codec.to_json(v) for k, v in r.items()} for r in rows],
        "after": str(rows[-1]["id"]) if len(rows) == limit else None,
    }


async def feed_top() -> int:
    rows = await SyncChange.raw("SELECT feed_seq FROM sync_state WHERE key = 'local'")
    return int(rows[0]["feed_seq"])


# -- balances across offices -------------------------------------------------------------------


async def recompute_balances(customers: set[Any]) -> int:
    """Settle each customer's ledger from the payments central has: a month paid by two
    offices counts once and the excess becomes credit, flagged for the owner. Cash taken is
    never rejected. Returns the number of customers whose figures changed."""
    changed = 0
    ids = sorted({codec.as_uuid(c) for c in customers}, key=str)
    if not ids:
        return 0
    marks = ", ".join("{}" for _ in ids)
    # Each customer's figures, read for the whole batch at once (a customer's charges, account
    # and flags are its own, so settling one does not change another's).
    received_by: dict[str, int] = {}
    for row in await SyncChange.raw(
        "SELECT p.customer, coalesce(sum(p.amount), 0) AS total FROM billing_payments p "
        f"WHERE p.customer IN ({marks}) AND NOT EXISTS "
        "(SELECT 1 FROM billing_reversals r WHERE r.payment = p.id) GROUP BY p.customer",
        *ids,
    ):
        received_by[str(row["customer"])] = int(row["total"])
    allocated_by: dict[str, list[dict[str, Any]]] = {}
    for row in await SyncChange.raw(
        "SELECT c.customer, c.id, c.amount, c.paid, c.opening, coalesce(sum(CASE WHEN r.id IS "
        "NULL THEN a.amount ELSE 0 END), 0) AS alloc, string_agg(CASE WHEN r.id IS NULL "
        "THEN p.number END, ',') AS numbers FROM billing_charges c "
        "JOIN billing_allocations a ON a.charge = c.id "
        "JOIN billing_payments p ON p.id = a.payment "
        "LEFT JOIN billing_reversals r ON r.payment = p.id "
        f"WHERE c.customer IN ({marks}) GROUP BY c.customer, c.id, c.amount, c.paid, c.opening",
        *ids,
    ):
        allocated_by.setdefault(str(row["customer"]), []).append(row)
    accounts_by: dict[str, list[dict[str, Any]]] = {}
    for row in await SyncChange.raw(
        f"SELECT id, customer, credit FROM billing_accounts WHERE customer IN ({marks})", *ids
    ):
        accounts_by.setdefault(str(row["customer"]), []).append(row)
    flagged_by: dict[str, int] = {}
    for row in await SyncOverpayment.raw(
        "SELECT customer, coalesce(max(excess), 0) AS e FROM sync_overpayments "
        f"WHERE customer IN ({marks}) GROUP BY customer",
        *ids,
    ):
        flagged_by[str(row["customer"])] = int(row["e"])
    for cid in ids:
        received = [{"total": received_by.get(str(cid), 0)}]
        allocated = allocated_by.get(str(cid), [])
        settled = 0
        excess: list[dict[str, Any]] = []
        for charge in allocated:
            alloc = int(charge["alloc"])
            paid = min(alloc, int(charge["amount"]))
            settled += paid
            if alloc > charge["amount"]:
                excess.append(
                    {
                        "charge": str(charge["id"]),
                        "excess": alloc - int(charge["amount"]),
                        "payments": charge["numbers"] or "",
                    }
                )
            if not charge["opening"] and int(charge["paid"]) != paid:
                await SyncChange.raw(
                    "UPDATE billing_charges SET paid = {} WHERE id = {}", paid, charge["id"]
                )
                changed += 1
        credit = int(received[0]["total"]) - settled
        account = accounts_by.get(str(cid), [])
        if not account:
            if credit:
                await SyncChange.raw(
                    "INSERT INTO billing_accounts (id, customer, credit, updated_at) "
                    "VALUES ({}, {}, {}, {})",
                    new_id(),
                    cid,
                    credit,
                    clock.now(),
                )
                changed += 1
        elif int(account[0]["credit"]) != credit:
            await SyncChange.raw(
                "UPDATE billing_accounts SET credit = {}, updated_at = {} WHERE id = {}",
                credit,
                clock.now(),
                account[0]["id"],
            )
            changed += 1
        total_excess = sum(e["excess"] for e in excess)
        if total_excess and flagged_by.get(str(cid), 0) != total_excess:
            await SyncOverpayment.insert(
                SyncOverpayment(customer=cid, excess=total_excess, detail=json.dumps(excess))
            )
            log.warning(
                "overpayment across offices",
                extra={"customer": str(cid), "excess": total_excess},
            )
    return changed


async def mark_overpayment_reviewed(flag_id: Any) -> None:
    await SyncOverpayment.update({SyncOverpayment.reviewed_at: clock.now()}).where(
        SyncOverpayment.id == flag_id
    )


def refuse_if_not_central(settings: Any) -> None:
    if settings.role != "central":
        raise Conflict(_("This is an office box; sync is served by the central instance."))
