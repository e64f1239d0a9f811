"""What the sync pages show and do: a box's sync status and "Sync now"; at central, the owner's
offices and boxes, the conflict review (keep, or reverse with the losing value), dead letters,
overpayment flags, and the office filter of the consolidated views.

Reversing a conflict is a plain edit on central: the capture triggers log it like any other
change, with a fresh HLC stamp, so it wins the merge on every box of the office at their next
pull.
"""

# Table and column names in SQL text come from fixed lists (codec.MODES and the migration's
# SYNCED columns), never from a request; values are always bound parameters.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from appliance import clock, data_version
from appliance.audit import service as audit_log
from appliance.db import write_transaction
from appliance.errors import Conflict, NotFound, ValidationFailed
from appliance.i18n import gettext as _
from appliance.settings import Settings
from appliance.sync import central, client, codec, hlc
from appliance.sync.state import get_state
from appliance.sync.tables import (
    SyncBox,
    SyncChange,
    SyncConflict,
    SyncDeadLetter,
    SyncOffice,
    SyncOverpayment,
)

log = logging.getLogger(__name__)

LIST_LIMIT = 200
PAYMENTS_PAGE = 50
# Customers of one office, for the consolidated views' filters.
OFFICE_CUSTOMERS = "(SELECT id FROM customers WHERE office = {})"


def is_central(settings: Settings) -> bool:
    return settings.role == "central"


def require_central(settings: Settings) -> None:
    if not is_central(settings):
        raise NotFound(_("This page is part of the central instance, not of an office box."))


def _uuid(value: Any) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise NotFound(_("There is no such record.")) from None


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw


# -- the box -----------------------------------------------------------------------------------


def box_alerts(settings: Settings) -> list[str]:
    """The sync warnings an admin sees on every page of a box: a clock far off central's, data
    newer than this version understands, invoice numbering stopped. One indexed read of the
    one-row ``sync_state`` table on the connection ``data_version`` keeps open (no event loop
    needed inside a template), so it costs microseconds per page. A page renders even while the
    database is busy or not migrated yet (no alerts then)."""
    if is_central(settings) or not settings.sqlite_path.exists():
        return []
    row = data_version.read_one(
        settings,
        "SELECT clock_offset_ms, needs_update, numbering_blocked FROM sync_state "
        "WHERE key = 'local'",
    )
    if row is None:
        return []
    offset, needs_update, blocked = int(row[0] or 0), bool(row[1]), bool(row[2])
    alerts = []
    if abs(offset) > hlc.MAX_DRIFT_MS:
        alerts.append(clock_warning(offset))
    if needs_update:
        alerts.append(_("Central sent data of a newer version: this box needs an update."))
    if blocked:
        alerts.append(_("Invoice numbering is stopped until the box has caught up with central."))
    return alerts


def clock_warning(offset_ms: int) -> str:
    minutes = round(abs(offset_ms) / 60000)
    if offset_ms > 0:
        return _("This box's clock is %(minutes)s minutes behind central's. Check its date "
                 "and time.", minutes=minutes)  # fmt: skip
    return _("This box's clock is %(minutes)s minutes ahead of central's. Check its date "
             "and time.", minutes=minutes)  # fmt: skip


async def box_status() -> dict[str, Any]:
    """The box's sync status (see :func:`client.status`) with its open conflicts and dead
    letters."""
    status = await client.status()
    status["clock_text"] = clock_warning(status["clock_offset_ms"])
    status["conflicts"] = await list_conflicts(limit=50)
    status["letters"] = await list_dead_letters(limit=50)
    return status


@dataclass
class RoundOutcome:
    ok: bool
    summary: dict[str, Any]
    error: str = ""


async def sync_now() -> RoundOutcome:
    """One sync round now. Central being unreachable or refusing is an expected outcome, told
    to the admin, not an error of the page."""
    try:
        summary = await client.sync_once()
    except client.SyncError as exc:
        return RoundOutcome(ok=False, summary={}, error=str(exc))
    except (ValueError, KeyError):
        # An answer that is not central's (a wrong URL served by another web server).
        log.exception("sync round got an answer it could not read")
        return RoundOutcome(
            ok=False,
            summary={},
            error=_("the answer did not come from a CTVMS central instance (check its address)"),
        )
    return RoundOutcome(ok=True, summary=summary)


# -- offices and boxes (central) ---------------------------------------------------------------


async def offices() -> list[dict[str, Any]]:
    """Every office with its boxes (see :func:`central.list_offices`)."""
    return await central.list_offices()


async def office_choices() -> list[tuple[str, str]]:
    rows = await SyncOffice.select(SyncOffice.code, SyncOffice.name).order_by(SyncOffice.code)
    return [(r["code"], r["name"]) for r in rows]


async def office_filter(settings: Settings, value: Any) -> str:
    """The office a consolidated view is limited to: a known office code at central, else ''
    (all offices; a box only ever holds its own)."""
    code = str(value or "").strip().upper()
    if not code or not is_central(settings):
        return ""
    return code if await SyncOffice.exists().where(SyncOffice.code == code) else ""


async def check_office(settings: Settings, value: Any) -> str | None:
    """At central, the office a new customer belongs to (required, one of sync_offices);
    ``None`` on a box, where the triggers give the box's own office."""
    if not is_central(settings):
        return None
    code = str(value or "").strip().upper()
    if not code or not await SyncOffice.exists().where(SyncOffice.code == code):
        raise ValidationFailed({"office": _("Choose the office this customer belongs to.")})
    return code


async def get_box(node_id: Any) -> dict[str, Any]:
    rows = await SyncBox.select().where(SyncBox.node_id == _uuid(node_id))
    if not rows:
        raise NotFound(_("There is no such box."))
    return rows[0]


async def revoke_box(node_id: Any, *, actor: Any) -> dict[str, Any]:
    box = await get_box(node_id)
    if box["revoked_at"] is None:
        await central.revoke_box(box["node_id"])
        await audit_log.record(
            actor=actor, entity="sync_box", entity_id=box["node_id"], action="revoke"
        )
    return box


# -- conflicts ---------------------------------------------------------------------------------


async def _node_labels() -> dict[str, str]:
    """Node id -> what the owner calls it: "central" or the box's office."""
    labels = {str(b["node_id"]): b["office_code"] for b in await SyncBox.select()}
    state = await get_state()
    labels[str(state["node_id"])] = _("central")
    return labels


async def list_conflicts(
    *, office: str = "", reviewed: bool = False, limit: int = LIST_LIMIT
) -> list[dict[str, Any]]:
    """Conflicts newest first (open ones, or reviewed ones), with the customer they concern
    (found through the change log's customer of the row, indexed by table and row)."""
    state = "c.reviewed_at IS NOT NULL" if reviewed else "c.reviewed_at IS NULL"
    scope = ""
    args: list[Any] = []
    if office:
        scope = "WHERE cu.office = {} "
        args.append(office)
    rows = await SyncConflict.raw(
        "SELECT k.*, cu.name AS customer_name, cu.crf AS crf, cu.office AS office FROM "
        "(SELECT c.*, (SELECT s.customer_id FROM sync_changes s WHERE s.table_name = "
        "c.table_name AND s.row_id = c.row_id AND s.customer_id IS NOT NULL LIMIT 1) "
        f"AS customer_id FROM sync_conflicts c WHERE {state}) k "
        f"LEFT JOIN customers cu ON cu.id = k.customer_id {scope}"
        f"ORDER BY k.detected_at DESC, k.id DESC LIMIT {int(limit)}",
        *args,
    )
    labels = await _node_labels()
    for row in rows:
        row["winner"] = _value(row["winner_value"])
        row["loser"] = _value(row["loser_value"])
        row["winner_label"] = labels.get(str(row["winner_node"]), str(row["winner_node"])[:8])
        row["loser_label"] = labels.get(str(row["loser_node"]), str(row["loser_node"])[:8])
        row["winner_time"] = _stamp_time(int(row["winner_hlc"]))
        row["loser_time"] = _stamp_time(int(row["loser_hlc"]))
        row["reversible"] = _reversible(row["table_name"], row["field"])
    return rows


def _stamp_time(stamp: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(hlc.wall_ms(stamp) / 1000, tz=dt.UTC)


def _reversible(table: str, field: str) -> bool:
    return (
        codec.MODES.get(table) == codec.MERGE
        and table != "outbox"
        and field in codec.columns_of(table)
        and field != "id"
    )


async def _open_conflict(conflict_id: Any) -> dict[str, Any]:
    rows = await SyncConflict.select().where(SyncConflict.id == _uuid(conflict_id))
    if not rows:
        raise NotFound(_("There is no such conflict."))
    if rows[0]["reviewed_at"] is not None:
        raise Conflict(_("This conflict was reviewed already."))
    return rows[0]


async def keep_conflict(conflict_id: Any, *, actor: Any) -> None:
    """The owner keeps the winning value: the conflict is marked reviewed."""
    async with write_transaction():
        conflict = await _open_conflict(conflict_id)
        await SyncConflict.update({SyncConflict.reviewed_at: clock.now()}).where(
            SyncConflict.id == conflict["id"]
        )
        await audit_log.record(
            actor=actor, entity="sync_conflict", entity_id=conflict["id"], action="keep"
        )


async def reverse_conflict(conflict_id: Any, *, actor: Any, settings: Settings) -> None:
    """Apply the losing value as a new edit on central (it flows down to the office's boxes)
    and mark the conflict reversed."""
    require_central(settings)
    async with write_transaction():
        conflict = await _open_conflict(conflict_id)
        table, field = conflict["table_name"], conflict["field"]
        if not _reversible(table, field):
            raise Conflict(_("This field cannot be set back from here."))
        value = codec.decode(table, field, _value(conflict["loser_value"]))
        updates: dict[str, Any] = {field: value}
        columns = codec.columns_of(table)
        if table == "customers" and field in ("name", "mobile"):
            from appliance.customers.service import _search_text

            row = (
                await SyncChange.raw(
                    "SELECT crf, name, mobile FROM customers WHERE id = {}", conflict["row_id"]
                )
            )[0]
            row[field] = value
            updates["search_text"] = _search_text(row["crf"], row["name"], row["mobile"])
        if "updated_at" in columns and field != "updated_at":
            updates["updated_at"] = clock.now()
        sets = ", ".join(f'"{name}" = {{}}' for name in updates)
        changed = await SyncChange.raw(
            f'UPDATE "{table}" SET {sets} WHERE id = {{}} RETURNING id',
            *updates.values(),
            conflict["row_id"],
        )
        if not changed:
            raise NotFound(_("The record of this conflict is gone."))
        now = clock.now()
        await SyncConflict.update(
            {SyncConflict.reviewed_at: now, SyncConflict.reversed_at: now}
        ).where(SyncConflict.id == conflict["id"])
        await audit_log.record(
            actor=actor,
            entity="sync_conflict",
            entity_id=conflict["id"],
            action="reverse",
            changes={"table": table, "field": field, "value": codec.to_json(value)},
        )
    log.info("conflict reversed", extra={"table": table, "field": field})


# -- dead letters and overpayments -------------------------------------------------------------


async def list_dead_letters(
    *, office: str = "", resolved: bool = False, limit: int = LIST_LIMIT
) -> list[dict[str, Any]]:
    query = SyncDeadLetter.select(
        SyncDeadLetter.id,
        SyncDeadLetter.change_id,
        SyncDeadLetter.office_code,
        SyncDeadLetter.table_name,
        SyncDeadLetter.row_id,
        SyncDeadLetter.reason,
        SyncDeadLetter.created_at,
        SyncDeadLetter.resolved_at,
    )
    where = (
        SyncDeadLetter.resolved_at.is_not_null()
        if resolved
        else SyncDeadLetter.resolved_at.is_null()
    )
    if office:
        where &= SyncDeadLetter.office_code == office
    return await (
        query.where(where)
        .order_by(SyncDeadLetter.created_at, ascending=False)
        .order_by(SyncDeadLetter.id, ascending=False)
        .limit(limit)
    )


async def resolve_dead_letter(letter_id: Any, *, actor: Any) -> None:
    async with write_transaction():
        rows = await SyncDeadLetter.select(SyncDeadLetter.id).where(
            SyncDeadLetter.id == _uuid(letter_id)
        )
        if not rows:
            raise NotFound(_("There is no such dead letter."))
        await SyncDeadLetter.update({SyncDeadLetter.resolved_at: clock.now()}).where(
            (SyncDeadLetter.id == rows[0]["id"]) & SyncDeadLetter.resolved_at.is_null()
        )
        await audit_log.record(
            actor=actor, entity="sync_dead_letter", entity_id=rows[0]["id"], action="resolve"
        )


async def list_overpayments(
    *, office: str = "", reviewed: bool = False, limit: int = LIST_LIMIT
) -> list[dict[str, Any]]:
    where = "o.reviewed_at IS NOT NULL" if reviewed else "o.reviewed_at IS NULL"
    args: list[Any] = []
    if office:
        where += " AND cu.office = {}"
        args.append(office)
    rows = await SyncOverpayment.raw(
        "SELECT o.id, o.customer, o.excess, o.detail, o.detected_at, o.reviewed_at, "
        "cu.name AS customer_name, cu.crf AS crf, cu.office AS office "
        "FROM sync_overpayments o LEFT JOIN customers cu ON cu.id = o.customer "
        f"WHERE {where} ORDER BY o.detected_at DESC, o.id DESC LIMIT {int(limit)}",
        *args,
    )
    for row in rows:
        detail = _value(row["detail"])
        row["months"] = detail if isinstance(detail, list) else []
    return rows


async def review_overpayment(flag_id: Any, *, actor: Any) -> None:
    rows = await SyncOverpayment.select(SyncOverpayment.id).where(
        SyncOverpayment.id == _uuid(flag_id)
    )
    if not rows:
        raise NotFound(_("There is no such overpayment flag."))
    async with write_transaction():
        await central.mark_overpayment_reviewed(rows[0]["id"])
        await audit_log.record(
            actor=actor, entity="sync_overpayment", entity_id=rows[0]["id"], action="review"
        )


async def open_counts() -> dict[str, int]:
    """Open conflicts, dead letters and overpayment flags (the central pages' tabs)."""
    rows = await SyncChange.raw(
        "SELECT (SELECT count(*) FROM sync_conflicts WHERE reviewed_at IS NULL) AS conflicts, "
        "(SELECT count(*) FROM sync_dead_letters WHERE resolved_at IS NULL) AS letters, "
        "(SELECT count(*) FROM sync_overpayments WHERE reviewed_at IS NULL) AS overpayments"
    )
    return {k: int(v or 0) for k, v in rows[0].items()}


# -- the consolidated payments list ------------------------------------------------------------


async def list_payments(*, office: str = "", page: int = 1) -> dict[str, Any]:
    """Payments newest first, of every office or of one (the office that took them)."""
    page = max(1, page)
    where = "TRUE"
    args: list[Any] = []
    if office:
        where = "p.office_code = {}"
        args.append(office)
    total = await SyncChange.raw(
        f"SELECT count(*) AS n FROM billing_payments p WHERE {where}", *args
    )
    rows = await SyncChange.raw(
        "SELECT p.number, p.office_code, p.amount, p.mode, p.paid_on, p.created_at, "
        "p.received_by_name, cu.id AS customer_id, cu.crf, cu.name AS customer_name, "
        "r.id AS reversal FROM billing_payments p JOIN customers cu ON cu.id = p.customer "
        "LEFT JOIN billing_reversals r ON r.payment = p.id "
        f"WHERE {where} ORDER BY p.created_at DESC, p.number DESC "
        f"LIMIT {PAYMENTS_PAGE} OFFSET {(page - 1) * PAYMENTS_PAGE}",
        *args,
    )
    count = int(total[0]["n"])
    return {
        "rows": rows,
        "total": count,
        "page": page,
        "pages": max(1, -(-count // PAYMENTS_PAGE)),
    }
