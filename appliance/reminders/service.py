"""Payment reminders: choose the customers who owe, then e-mail them in the background.

The admin picks a service (or both), a minimum due and/or a minimum of pending months;
:func:`select_customers` lists who that selects, from billing's :func:`dues`, split into those
with an e-mail and those the office has to call. :func:`start_batch` records the chosen
customers as one batch and asks the worker to send it; :func:`process_unfinished` (the
``reminders`` job) works through every unfinished batch in chunks.

Each chunk is one transaction: the "reminder" e-mails are queued in the outbox together with
the rows saying they were sent, so a worker killed mid-send resumes where it stopped, and nobody
is reminded twice. A customer reminded within ``CTVMS_REMINDER_INTERVAL_DAYS`` is skipped unless
the admin ticked "send anyway". The amounts are read again when the e-mail is written, so a
customer who paid in between gets no reminder.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from appliance import clock, i18n
from appliance.customers.tables import Customer
from appliance.db import write_transaction
from appliance.errors import NotFound, ValidationFailed
from appliance.i18n import gettext as _
from appliance.money import AmountError, parse_amount
from appliance.plans.service import service_label
from appliance.plans.tables import SERVICES
from appliance.reminders.tables import Reminder, ReminderBatch
from appliance.settings import Settings

log = logging.getLogger(__name__)

CHUNK = 50
MAX_MONTHS = 600


@dataclass(frozen=True)
class Criteria:
    service: str | None = None
    min_due: int = 0  # minor units
    min_months: int = 0


def parse_criteria(data: dict[str, Any]) -> tuple[Criteria, dict[str, str]]:
    """The admin's filter from a form or query; errors by field."""
    errors: dict[str, str] = {}
    service = (data.get("service") or "").strip() or None
    if service is not None and service not in SERVICES:
        errors["service"] = _("Choose cable TV, broadband or both.")
        service = None
    min_due = 0
    raw_due = str(data.get("min_due") or "").strip()
    if raw_due and raw_due not in ("0", "0,00", "0.00"):
        try:
            min_due = parse_amount(raw_due)
        except AmountError as exc:
            errors["min_due"] = str(exc)
    min_months = 0
    raw_months = str(data.get("min_months") or "").strip()
    if raw_months:
        if not raw_months.isdigit() or int(raw_months) > MAX_MONTHS:
            errors["min_months"] = _("Enter a whole number of months, like 2.")
        else:
            min_months = int(raw_months)
    return Criteria(service, min_due, min_months), errors


async def _dues(customer_ids: list[Any] | None, service: str | None) -> list[dict[str, Any]]:
    from appliance.billing.service import dues

    return await dues(customer_ids, service)


async def _last_reminded(customer_ids: list[Any]) -> dict[Any, dt.datetime]:
    last: dict[Any, dt.datetime] = {}
    for i in range(0, len(customer_ids), 500):
        rows = await Reminder.select(Reminder.customer, Reminder.sent_at).where(
            (Reminder.status == "sent") & Reminder.customer.is_in(customer_ids[i : i + 500])
        )
        for r in rows:
            if r["customer"] not in last or r["sent_at"] > last[r["customer"]]:
                last[r["customer"]] = r["sent_at"]
    return last


async def _customers(customer_ids: list[Any]) -> dict[Any, dict[str, Any]]:
    found: dict[Any, dict[str, Any]] = {}
    for i in range(0, len(customer_ids), 500):
        rows = await Customer.select(
            Customer.id, Customer.crf, Customer.name, Customer.email, Customer.mobile
        ).where(Customer.id.is_in(customer_ids[i : i + 500]) & Customer.archived_at.is_null())
        found.update({r["id"]: r for r in rows})
    return found


def recent_cutoff(settings: Settings) -> dt.datetime:
    return clock.now() - dt.timedelta(days=settings.reminder_interval_days)


async def select_customers(settings: Settings, criteria: Criteria) -> dict[str, Any]:
    """Who the criteria select, biggest due first, with their dues and last reminder."""
    rows = [
        r
        for r in await _dues(None, criteria.service)
        if r["amount_due"] >= criteria.min_due and len(r["pending"]) >= criteria.min_months
    ]
    ids = [r["customer_id"] for r in rows]
    people = await _customers(ids)
    last = await _last_reminded(ids)
    cutoff = recent_cutoff(settings)
    with_email, without_email = [], []
    for r in rows:
        person = people.get(r["customer_id"])
        if person is None:
            continue
        entry = {
            **person,
            "amount_due": r["amount_due"],
            "pending": [tuple(p) for p in r["pending"]],
            "by_service": r["by_service"],
            "last_reminded_at": last.get(person["id"]),
        }
        entry["recent"] = bool(entry["last_reminded_at"] and entry["last_reminded_at"] >= cutoff)
        (with_email if person["email"] else without_email).append(entry)
    return {
        "with_email": with_email,
        "without_email": without_email,
        "total_due": sum(e["amount_due"] for e in with_email + without_email),
    }


async def start_batch(
    settings: Settings,
    criteria: Criteria,
    customer_ids: list[Any],
    *,
    force: bool = False,
    actor: Any = None,
) -> dict[str, Any]:
    """Record the reminders to send; the worker sends them (call :func:`kick` after)."""
    ids = []
    for value in customer_ids:
        try:
            cid = value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
        except ValueError:
            continue
        if cid not in ids:
            ids.append(cid)
    if not ids:
        raise ValidationFailed({"": _("Choose at least one customer to remind.")})
    known = await _customers(ids)
    ids = [i for i in ids if i in known]
    if not ids:
        raise ValidationFailed({"": _("None of the chosen customers can be reminded.")})
    batch = ReminderBatch(
        created_by=getattr(actor, "display_name", "") or "",
        created_by_id=getattr(actor, "id", None),
        service=criteria.service or "",
        min_due=criteria.min_due,
        min_months=criteria.min_months,
        force=force,
        total=len(ids),
        status="queued",
    )
    async with write_transaction():
        await batch.save()
        for i in range(0, len(ids), 500):
            await Reminder.insert(
                *(Reminder(batch=batch.id, customer=cid) for cid in ids[i : i + 500])
            )
    log.info("reminder batch queued", extra={"batch_id": str(batch.id), "total": len(ids)})
    return await get_batch(batch.id)


def kick() -> None:
    """Ask the worker to send queued reminders (after the batch committed)."""
    from appliance.jobs.queue import enqueue_quietly
    from appliance.jobs.registry import REMINDERS
    from appliance.jobs.tasks import run_job_task

    enqueue_quietly(run_job_task, REMINDERS, "manual")


async def get_batch(batch_id: Any) -> dict[str, Any]:
    try:
        bid = batch_id if isinstance(batch_id, uuid.UUID) else uuid.UUID(str(batch_id))
    except ValueError as exc:
        raise NotFound(_("This reminder send does not exist.")) from exc
    rows = await ReminderBatch.select().where(ReminderBatch.id == bid)
    if not rows:
        raise NotFound(_("This reminder send does not exist."))
    batch = rows[0]
    batch["percent"] = 100 if not batch["total"] else batch["done"] * 100 // batch["total"]
    return batch


async def batch_reminders(batch_id: Any) -> list[dict[str, Any]]:
    return (
        await Reminder.select(
            Reminder.status,
            Reminder.amount_due,
            Reminder.sent_at,
            Reminder.customer.crf.as_alias("crf"),
            Reminder.customer.name.as_alias("name"),
            Reminder.customer.mobile.as_alias("mobile"),
        )
        .where(Reminder.batch == batch_id)
        .order_by(Reminder.customer.name)
    )


async def recent_batches(limit: int = 10) -> list[dict[str, Any]]:
    return (
        await ReminderBatch.select()
        .order_by(ReminderBatch.created_at, ascending=False)
        .limit(limit)
    )


async def has_unfinished() -> bool:
    return bool(await ReminderBatch.count().where(ReminderBatch.status != "done"))


# -- sending -----------------------------------------------------------------------------------


def _context(
    customer: dict[str, Any], due: dict[str, Any], months_by_service: dict[str, list[Any]]
) -> dict[str, Any]:
    """What the "reminder" template needs; labels in the office's language."""
    services = []
    for name in SERVICES:
        if name in due["by_service"] and name in months_by_service:
            services.append(
                {
                    "service": name,
                    "label": service_label(name),
                    "amount": due["by_service"][name],
                    "months": [dt.date(y, m, 1) for y, m in months_by_service[name]],
                }
            )
    return {
        "name": customer["name"],
        "crf": customer["crf"],
        "amount_due": due["amount_due"],
        "credit": due.get("credit") or 0,
        "services": services,
        "months": [dt.date(y, m, 1) for y, m in due["pending"]],
    }


async def _send_chunk(settings: Settings, batch: dict[str, Any]) -> dict[str, int]:
    """Process the next chunk of a batch in one transaction; counts of what was done."""
    from appliance.mail import service as mail

    service = batch["service"] or None
    counts = {"done": 0, "sent": 0, "skipped": 0}
    async with write_transaction():
        pending = (
            await Reminder.select(Reminder.id, Reminder.customer)
            .where((Reminder.batch == batch["id"]) & (Reminder.status == "pending"))
            .order_by(Reminder.id)
            .limit(CHUNK)
        )
        if not pending:
            return counts
        ids = [r["customer"] for r in pending]
        people = await _customers(ids)
        dues = {r["customer_id"]: r for r in await _dues(ids, service)}
        per_service: dict[Any, dict[str, list[Any]]] = {}
        for name in [service] if service else SERVICES:
            rows = dues.values() if service else await _dues(ids, name)
            for r in rows:
                per_service.setdefault(r["customer_id"], {})[name] = r["pending"]
        cutoff = recent_cutoff(settings)
        recent = set()
        if not batch["force"]:
            recent = {
                r["customer"]
                for r in await Reminder.select(Reminder.customer).where(
                    (Reminder.status == "sent")
                    & (Reminder.sent_at >= cutoff)
                    & Reminder.customer.is_in(ids)
                )
            }
        now = clock.now()
        for row in pending:
            cid = row["customer"]
            person, due = people.get(cid), dues.get(cid)
            values: dict[Any, Any] = {}
            if person is None or due is None or due["amount_due"] <= 0:
                values[Reminder.status] = "paid"
            elif not person["email"]:
                values[Reminder.status] = "no_email"
            elif cid in recent:
                values[Reminder.status] = "recent"
            else:
                with i18n.use_locale(settings.locale):
                    context = _context(person, due, per_service.get(cid, {}))
                message = await mail.queue(
                    settings=settings, kind="reminder", to=person["email"], context=context
                )
                values = {
                    Reminder.status: "sent",
                    Reminder.email: person["email"],
                    Reminder.amount_due: due["amount_due"],
                    Reminder.months: [
                        {"year": d.year, "month": d.month} for d in context["months"]
                    ],
                    Reminder.outbox_id: message["id"],
                    Reminder.sent_at: now,
                }
                recent.add(cid)  # the same customer twice in a batch gets one e-mail
            counts["sent" if values[Reminder.status] == "sent" else "skipped"] += 1
            counts["done"] += 1
            await Reminder.update(values).where(Reminder.id == row["id"])
        await ReminderBatch.update(
            {
                ReminderBatch.done: ReminderBatch.done + counts["done"],
                ReminderBatch.sent: ReminderBatch.sent + counts["sent"],
                ReminderBatch.skipped: ReminderBatch.skipped + counts["skipped"],
                ReminderBatch.status: "running",
            }
        ).where(ReminderBatch.id == batch["id"])
    return counts


async def process_batch(settings: Settings, batch_id: Any) -> dict[str, int]:
    """Send a batch to the end (resuming where a killed worker stopped)."""
    from appliance.jobs.runner import heartbeat
    from appliance.mail import service as mail

    batch = await get_batch(batch_id)
    totals = {"sent": 0, "skipped": 0}
    while True:
        counts = await _send_chunk(settings, batch)
        if not counts["done"]:
            break
        totals["sent"] += counts["sent"]
        totals["skipped"] += counts["skipped"]
        if counts["sent"]:
            mail.kick()
        await heartbeat()
    await ReminderBatch.update(
        {ReminderBatch.status: "done", ReminderBatch.finished_at: clock.now()}
    ).where((ReminderBatch.id == batch["id"]) & (ReminderBatch.status != "done"))
    log.info("reminder batch sent", extra={"batch_id": str(batch["id"]), **totals})
    return totals


async def process_unfinished(settings: Settings) -> dict[str, int]:
    """The ``reminders`` job: every batch not yet done, oldest first."""
    summary = {"batches": 0, "sent": 0, "skipped": 0}
    batches = (
        await ReminderBatch.select(ReminderBatch.id)
        .where(ReminderBatch.status != "done")
        .order_by(ReminderBatch.created_at)
    )
    for batch in batches:
        totals = await process_batch(settings, batch["id"])
        summary["batches"] += 1
        summary["sent"] += totals["sent"]
        summary["skipped"] += totals["skipped"]
    return summary
