"""Complaints: a customer raises one, the office reads it, adds notes and resolves it.

Every step is also an append-only :class:`ComplaintEvent`, which is the history the customer
sees (internal notes excepted). The complaint row holds the current state for lists and counts.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from piccolo.columns.combination import WhereRaw

from appliance import clock
from appliance.complaints.tables import (
    CATEGORIES,
    STATUSES,
    Complaint,
    ComplaintCounter,
    ComplaintEvent,
)
from appliance.customers.tables import Customer
from appliance.dashboard import cache as dashboard_cache
from appliance.db import write_transaction
from appliance.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from appliance.i18n import gettext as _
from appliance.mail import service as mail
from appliance.settings import Settings

log = logging.getLogger(__name__)

PAGE_SIZE = 25
MAX_MESSAGE = 2000
MIN_MESSAGE = 5
STAFF_ROLES = ("owner", "admin", "agent")


def category_label(code: str) -> str:
    return {
        "no_signal": _("No signal"),
        "set_top_box": _("Set-top box"),
        "billing": _("Billing"),
        "broadband_down": _("Broadband down"),
        "slow_speed": _("Slow speed"),
        "other": _("Other"),
    }.get(code, code)


def status_label(code: str) -> str:
    return {"open": _("Open"), "resolved": _("Resolved")}.get(code, code)


def category_choices() -> list[tuple[str, str]]:
    return [(code, category_label(code)) for code in CATEGORIES]


@dataclass
class Page:
    rows: list[dict[str, Any]]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _parse_id(value: Any) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError as exc:
        raise NotFound(_("This complaint does not exist.")) from exc


def _clean_text(value: Any, *, field: str, required: bool, errors: dict[str, str]) -> str:
    text = str(value or "").replace("\r\n", "\n").strip()
    if required and len(text) < MIN_MESSAGE:
        errors[field] = _("Write at least %(n)s characters.", n=MIN_MESSAGE)
    elif len(text) > MAX_MESSAGE:
        errors[field] = _(
            "Write at most %(n)s characters (this has %(len)s).", n=MAX_MESSAGE, len=len(text)
        )
    return text


def _actor_name(actor: Any) -> str:
    return getattr(actor, "display_name", "") or "" if actor else "system"


async def _next_number(office_code: str) -> str:
    """Take the next serial of the office; runs inside the caller's write transaction."""
    rows = (
        await ComplaintCounter.update({ComplaintCounter.last: ComplaintCounter.last + 1})
        .where(ComplaintCounter.office_code == office_code)
        .returning(ComplaintCounter.last)
    )
    if rows:
        serial = rows[0]["last"]
    else:
        await ComplaintCounter(office_code=office_code, last=1).save()
        serial = 1
    # The counter is this box's own; the prefix is its series (see SyncState.invoice_series),
    # so two boxes of one office never give a complaint the same number.
    series = await ComplaintCounter.raw("SELECT invoice_series FROM sync_state WHERE key = 'local'")
    prefix = (series[0]["invoice_series"] if series else "") or office_code
    return f"{prefix}-C-{serial:06d}"


async def _customer(customer_id: Any) -> dict[str, Any]:
    try:
        cid = customer_id if isinstance(customer_id, uuid.UUID) else uuid.UUID(str(customer_id))
    except ValueError as exc:
        raise NotFound(_("This customer does not exist.")) from exc
    rows = await Customer.select(
        Customer.id, Customer.crf, Customer.name, Customer.email, Customer.archived_at
    ).where(Customer.id == cid)
    if not rows:
        raise NotFound(_("This customer does not exist."))
    return rows[0]


async def customer_by_crf(crf: str) -> dict[str, Any] | None:
    crf = crf.strip().upper()
    if not crf:
        return None
    rows = await Customer.select(Customer.id).where(Customer.crf == crf)
    return rows[0] if rows else None


def _owner_check(actor: Any, customer_id: Any) -> None:
    """A customer acts only on their own complaints; staff on anyone's."""
    role = getattr(actor, "role", None)
    if role == "customer" and str(actor.customer_id) != str(customer_id):
        raise PermissionDenied(_("You can only raise complaints for your own account."))
    if role not in (*STAFF_ROLES, "customer"):
        raise PermissionDenied(_("You are not allowed to do this."))


async def raise_complaint(
    customer_id: Any, *, category: str, message: str, actor: Any, settings: Settings
) -> dict[str, Any]:
    """Record a complaint and queue the "complaint received" e-mail in the same transaction."""
    _owner_check(actor, customer_id)
    errors: dict[str, str] = {}
    if category not in CATEGORIES:
        errors["category"] = _("Choose what the complaint is about.")
    text = _clean_text(message, field="message", required=True, errors=errors)
    if errors:
        raise ValidationFailed(errors)
    customer = await _customer(customer_id)
    if customer["archived_at"]:
        raise ValidationFailed({"": _("This customer is archived; restore them first.")})
    now = clock.now()
    async with write_transaction():
        number = await _next_number(settings.office_code)
        row = Complaint(
            number=number,
            customer=customer["id"],
            category=category,
            message=text,
            status="open",
            raised_at=now,
            raised_by=getattr(actor, "id", None),
            updated_at=now,
        )
        await row.save()
        await ComplaintEvent(
            complaint=row.id,
            at=now,
            kind="raised",
            actor_id=getattr(actor, "id", None),
            actor=_actor_name(actor),
            text="",
            visible_to_customer=True,
        ).save()
        if customer["email"]:
            await mail.queue(
                settings=settings,
                kind="complaint_received",
                to=customer["email"],
                context={
                    "name": customer["name"],
                    "number": number,
                    "category": category_label(category),
                    "message": text,
                    "raised_on": now.astimezone(settings.tz).date(),
                },
            )
    dashboard_cache.invalidate()
    log.info(
        "complaint raised",
        extra={
            "complaint_id": str(row.id),
            "category": category,
            "customer_id": str(customer["id"]),
        },
    )
    if customer["email"]:
        mail.kick()
    return await get_complaint(row.id)


async def get_complaint(complaint_id: Any, *, viewer: Any = None) -> dict[str, Any]:
    """One complaint with its customer and history.

    With a customer as ``viewer``, another customer's complaint is reported as missing (not
    forbidden, so its existence is not revealed) and internal notes are left out.
    """
    key = _parse_id(complaint_id)
    rows = await Complaint.select(
        *Complaint.all_columns(),
        Complaint.customer.crf.as_alias("crf"),
        Complaint.customer.name.as_alias("customer_name"),
        Complaint.customer.email.as_alias("customer_email"),
    ).where(Complaint.id == key)
    is_customer = getattr(viewer, "role", None) == "customer"
    if not rows or (is_customer and str(rows[0]["customer"]) != str(viewer.customer_id)):
        raise NotFound(_("This complaint does not exist."))
    complaint = rows[0]
    events = ComplaintEvent.select().where(ComplaintEvent.complaint == key)
    if is_customer:
        events = events.where(ComplaintEvent.visible_to_customer == True)  # noqa: E712
    complaint["events"] = await events.order_by(ComplaintEvent.at).order_by(ComplaintEvent.id)
    return complaint


async def list_complaints(
    *,
    status: str | None = None,
    category: str | None = None,
    unread: bool | None = None,
    customer_id: Any = None,
    page: int = 1,
    per_page: int = PAGE_SIZE,
    office: str = "",
) -> Page:
    """Complaints newest first, filtered; ``customer_id`` limits them to one customer,
    ``office`` to one office's customers (central holds every office's)."""
    page = max(1, page)
    per_page = min(max(1, per_page), 200)
    where = Complaint.id.is_not_null()
    if status in STATUSES:
        where &= Complaint.status == status
    if category in CATEGORIES:
        where &= Complaint.category == category
    if unread is True:
        where &= Complaint.read_at.is_null()
    elif unread is False:
        where &= Complaint.read_at.is_not_null()
    if customer_id is not None:
        where &= Complaint.customer == customer_id
    if office:
        where &= _of_office(office)
    total = await Complaint.count().where(where)
    rows = (
        await Complaint.select(
            Complaint.id,
            Complaint.number,
            Complaint.customer,
            Complaint.category,
            Complaint.message,
            Complaint.status,
            Complaint.raised_at,
            Complaint.read_at,
            Complaint.resolved_at,
            Complaint.resolution,
            Complaint.customer.crf.as_alias("crf"),
            Complaint.customer.name.as_alias("customer_name"),
        )
        .where(where)
        .order_by(Complaint.raised_at, ascending=False)
        .order_by(Complaint.id, ascending=False)
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return Page(rows=rows, total=total, page=page, per_page=per_page)


def _of_office(office: str) -> WhereRaw:
    return WhereRaw(
        '"complaints"."customer" IN (SELECT id FROM customers WHERE office = {})', office
    )


async def unread_count(*, office: str = "") -> int:
    """Complaints the office has not marked read (the dashboard's badge)."""
    where = Complaint.read_at.is_null()
    if office:
        where &= _of_office(office)
    return await Complaint.count().where(where)


async def _current(key: uuid.UUID) -> dict[str, Any]:
    rows = await Complaint.select().where(Complaint.id == key)
    if not rows:
        raise NotFound(_("This complaint does not exist."))
    return rows[0]


async def mark_read(complaint_id: Any, *, actor: Any) -> None:
    """Mark a complaint read by the office (once; later calls keep the first time)."""
    key = _parse_id(complaint_id)
    updated = (
        await Complaint.update({Complaint.read_at: clock.now()})
        .where((Complaint.id == key) & Complaint.read_at.is_null())
        .returning(Complaint.id)
    )
    dashboard_cache.invalidate()
    if not updated:
        await _current(key)


async def add_note(
    complaint_id: Any, *, text: str, visible_to_customer: bool, actor: Any
) -> dict[str, Any]:
    """Add a note to the history; the office's notes are internal unless marked visible."""
    key = _parse_id(complaint_id)
    errors: dict[str, str] = {}
    note = _clean_text(text, field="note", required=True, errors=errors)
    if errors:
        raise ValidationFailed(errors)
    now = clock.now()
    async with write_transaction():
        current = await _current(key)
        await ComplaintEvent(
            complaint=key,
            at=now,
            kind="note",
            actor_id=getattr(actor, "id", None),
            actor=_actor_name(actor),
            text=note,
            visible_to_customer=visible_to_customer,
        ).save()
        # Writing a note means someone read it.
        await Complaint.update(
            {Complaint.updated_at: now, Complaint.read_at: current["read_at"] or now}
        ).where(Complaint.id == key)
    dashboard_cache.invalidate()
    return await get_complaint(key)


async def resolve_complaint(
    complaint_id: Any, *, resolution: str, actor: Any, settings: Settings
) -> dict[str, Any]:
    """Close a complaint with a note for the customer and queue the "resolved" e-mail."""
    key = _parse_id(complaint_id)
    errors: dict[str, str] = {}
    note = _clean_text(resolution, field="resolution", required=True, errors=errors)
    if errors:
        raise ValidationFailed(errors)
    now = clock.now()
    async with write_transaction():
        current = await _current(key)
        # Conditional on still being open, so two admins resolving at once on PostgreSQL
        # cannot both send the e-mail.
        closed = (
            await Complaint.update(
                {
                    Complaint.status: "resolved",
                    Complaint.resolved_at: now,
                    Complaint.resolution: note,
                    Complaint.read_at: current["read_at"] or now,
                    Complaint.updated_at: now,
                }
            )
            .where((Complaint.id == key) & (Complaint.status == "open"))
            .returning(Complaint.id)
        )
        if not closed:
            raise Conflict(_("This complaint is already resolved."))
        await ComplaintEvent(
            complaint=key,
            at=now,
            kind="resolved",
            actor_id=getattr(actor, "id", None),
            actor=_actor_name(actor),
            text=note,
            visible_to_customer=True,
        ).save()
        customer = await _customer(current["customer"])
        if customer["email"]:
            await mail.queue(
                settings=settings,
                kind="complaint_resolved",
                to=customer["email"],
                context={
                    "name": customer["name"],
                    "number": current["number"],
                    "category": category_label(current["category"]),
                    "resolution": note,
                    "raised_on": current["raised_at"].astimezone(settings.tz).date(),
                },
            )
    dashboard_cache.invalidate()
    log.info("complaint resolved", extra={"complaint_id": str(key)})
    if customer["email"]:
        mail.kick()
    return await get_complaint(key)
