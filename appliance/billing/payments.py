"""Recording and reversing payments.

A payment is validated, allocated to the oldest open months, numbered and stored with its
invoice snapshot in one transaction, which also queues the invoice e-mail. The transaction holds
the office's billing lock (see :func:`appliance.billing.sql.lock_billing`), so two payments for
the same customer are taken one after the other and can never exceed the due together.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from appliance import clock, i18n
from appliance.audit import service as audit_log
from appliance.billing import charges, rules, sql
from appliance.billing.tables import (
    MODES,
    TARGETS,
    Allocation,
    BillingAccount,
    Charge,
    InvoiceCounter,
    Payment,
    PaymentReversal,
)
from appliance.customers.tables import Connection, Customer
from appliance.dashboard import cache as dashboard_cache
from appliance.db import write_transaction
from appliance.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from appliance.i18n import gettext as _
from appliance.mail import service as mail
from appliance.money import AmountError, parse_amount
from appliance.settings import Settings
from appliance.sync import job as sync_job

log = logging.getLogger(__name__)

REFERENCE = re.compile(r"[A-Z0-9][A-Z0-9._/:#-]{3,79}")
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{8,100}")
REASON_MAX = 500
ADMIN_ROLES = ("owner", "admin")
# Within a month, cable is settled before broadband.
SERVICE_ORDER = "CASE service WHEN 'cable' THEN 0 ELSE 1 END"


def normalise_reference(raw: Any) -> str:
    return "".join(str(raw or "").split()).upper()


def _money(settings: Settings):
    return lambda minor: i18n.money(minor, settings.currency)


def _parse_uuid(value: Any) -> uuid.UUID | None:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except (TypeError, ValueError):
        return None


def _actor_id(actor: Any) -> Any:
    return getattr(actor, "id", None)


def _stored_key(actor: Any, key: str | None) -> str | None:
    """Keys are kept per user, so two people's clients can never collide."""
    if not key:
        return None
    return f"{_actor_id(actor) or 'system'}:{key}"


async def _replayed(stored_key: str | None, customer_id: Any) -> dict[str, Any] | None:
    if stored_key is None:
        return None
    rows = await Payment.select(Payment.number, Payment.customer).where(
        Payment.idempotency_key == stored_key
    )
    if not rows:
        return None
    if str(rows[0]["customer"]) != str(customer_id):
        raise Conflict(_("This request key was already used for another customer's payment."))
    return rows[0]


def _check_inputs(
    data: dict[str, Any], *, actor: Any, customer_id: Any, settings: Settings
) -> tuple[dict[str, Any], dict[str, str]]:
    """Everything that can be judged without the database."""
    errors: dict[str, str] = {}
    role = getattr(actor, "role", "")
    mode = str(data.get("mode") or "").strip().lower()
    if mode not in MODES:
        errors["mode"] = _("Choose cash or online.")
    elif role == "customer" and mode != "online":
        errors["mode"] = _("Customers pay online; cash is taken at the office or by an agent.")
    if role == "customer" and str(getattr(actor, "customer_id", "")) != str(customer_id):
        errors["customer"] = _("You can only pay for your own account.")
    target = str(data.get("service") or "all").strip().lower()
    if target not in TARGETS:
        errors["service"] = _("Choose a service, or the whole amount due.")
    reference = ""
    if mode == "online":
        reference = normalise_reference(data.get("reference"))
        if not reference:
            errors["reference"] = _("Enter the reference of the transfer (its transaction id).")
        elif not REFERENCE.fullmatch(reference):
            errors["reference"] = _("A reference has 4 to 80 letters or digits (also - _ . / : #).")
    amount = 0
    try:
        amount = parse_amount(data.get("amount"))
    except AmountError as exc:
        errors["amount"] = str(exc)
    return {"mode": mode, "target": target, "reference": reference, "amount": amount}, errors


async def open_charges(customer_id: Any, service: str | None = None) -> list[dict[str, Any]]:
    """Billed months not yet fully paid, oldest first (cable before broadband in a month)."""
    query = (
        "SELECT id, connection, service, year, month, plan_name, amount, paid "
        "FROM billing_charges WHERE customer = {} AND state = 'billed' AND paid < amount"
    )
    args: list[Any] = [customer_id]
    if service:
        query += " AND service = {}"
        args.append(service)
    rows = await Charge.raw(query + f" ORDER BY year, month, {SERVICE_ORDER}", *args)
    return rows


async def credit_of(customer_id: Any) -> int:
    rows = await BillingAccount.select(BillingAccount.credit).where(
        BillingAccount.customer == customer_id
    )
    return rows[0]["credit"] if rows else 0


async def _set_credit(customer_id: Any, credit: int) -> None:
    updated = (
        await BillingAccount.update(
            {BillingAccount.credit: credit, BillingAccount.updated_at: clock.now()}
        )
        .where(BillingAccount.customer == customer_id)
        .returning(BillingAccount.id)
    )
    if not updated:
        await BillingAccount(customer=customer_id, credit=credit).save()


class NumberingBlocked(Conflict):
    """Sync found that this box may be behind its own history (restored from an old backup, or
    a copy of its card): an invoice number taken now could repeat one already given out."""

    code = "numbering_blocked"

    def __init__(self) -> None:
        super().__init__(
            _(
                "Invoice numbering is paused on this box: it looks restored from an old backup "
                "or copied, so a new number could repeat one already given out. Nothing was "
                "recorded. Sync with central (the Sync page, or ctvms sync once) to catch up, "
                "then take the payment again."
            )
        )


async def _series(office_code: str) -> str:
    """This box's invoice series: the office code, or ``OFFICE-N`` for an office's N-th box
    (given by central at enrollment, so two boxes of one office never share a number).
    Refuses while sync has blocked numbering."""
    rows = await Payment.raw(
        "SELECT numbering_blocked, invoice_series FROM sync_state WHERE key = 'local'"
    )
    if rows and rows[0]["numbering_blocked"]:
        raise NumberingBlocked()
    return (rows[0]["invoice_series"] if rows else "") or office_code


async def _next_number(office_code: str, year: int) -> str:
    """Take the next invoice serial of the box's series and year (in the payment's
    transaction)."""
    series = await _series(office_code)
    key = f"{series}-{year}"
    rows = (
        await InvoiceCounter.update({InvoiceCounter.last: InvoiceCounter.last + 1})
        .where(InvoiceCounter.id == key)
        .returning(InvoiceCounter.last)
    )
    if rows:
        serial = rows[0]["last"]
    else:
        await InvoiceCounter(id=key, office_code=office_code, year=year, last=1).save()
        serial = 1
    return f"{series}-{year}-{serial:06d}"


async def _load_customer(customer_id: Any) -> dict[str, Any]:
    cid = _parse_uuid(customer_id)
    rows = await Customer.select().where(Customer.id == cid) if cid else []
    if not rows:
        raise ValidationFailed({"customer": _("There is no customer with this number.")})
    if rows[0]["archived_at"] is not None:
        raise ValidationFailed(
            {"customer": _("This customer was removed. Restore them before taking a payment.")}
        )
    return rows[0]


def _snapshot(settings: Settings, customer: dict[str, Any]) -> dict[str, Any]:
    """What the invoice prints that may change later (the months it settled are kept by the
    allocations and the charges' own plan snapshot)."""
    return {
        "office": {
            "code": settings.office_code,
            "name": settings.office_name,
            "address": settings.office_address,
        },
        "customer": {
            key: customer[key]
            for key in (
                "crf",
                "name",
                "house",
                "area",
                "district",
                "state",
                "postal_code",
                "mobile",
                "email",
            )
        },
        "currency": settings.currency,
    }


async def record_payment(
    customer_id: Any,
    data: dict[str, Any],
    *,
    actor: Any,
    settings: Settings,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Take a payment and return it (see :func:`appliance.billing.service.get_payment`).

    ``data`` holds the form's text: ``amount``, ``mode`` (cash/online), ``reference`` (online)
    and ``service`` (cable, broadband, or all). A request with an ``idempotency_key`` already
    used by the same user returns the payment recorded then, whatever else it says.
    """
    from appliance.billing.service import get_payment

    if idempotency_key is not None and not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise ValidationFailed(
            {"idempotency_key": _("The request key must be 8 to 100 letters, digits or - _ . :")}
        )
    stored_key = _stored_key(actor, idempotency_key)
    values, errors = _check_inputs(data, actor=actor, customer_id=customer_id, settings=settings)
    today = clock.today(settings.tz)
    async with write_transaction():
        await sql.lock_billing(settings.office_code)
        # A key already used (a retry after a cut, or a twin that waited for the lock) returns
        # its payment, whatever else the request says. Looked up only under the lock: that is
        # the look-up that counts, and a fresh key (nearly every request) costs one query.
        if original := await _replayed(stored_key, customer_id):
            return await get_payment(original["number"])
        if "customer" in errors:
            raise ValidationFailed(errors)
        customer = await _load_customer(customer_id)
        await charges.catch_up(settings, year=today.year, customer_id=customer["id"])
        payment = await _take(customer, values, errors, actor, settings, stored_key)
    number = payment["number"]
    dashboard_cache.invalidate()
    log.info(
        "payment recorded",
        extra={"number": number, "amount": values["amount"], "mode": values["mode"]},
    )
    if customer["email"]:
        mail.kick()
    _prerender(number)
    await sync_job.sync_soon(settings)  # an enrolled box pushes it to central now
    return payment


async def _take(
    customer: dict[str, Any],
    values: dict[str, Any],
    errors: dict[str, str],
    actor: Any,
    settings: Settings,
    stored_key: str | None,
) -> dict[str, Any]:
    """The part of a payment that runs under the lock: the checks that need the ledger, then
    the writes. Returns the payment as :func:`appliance.billing.service.get_payment` would read
    it back. Raises ValidationFailed (rolling everything back) when anything is wrong."""
    from appliance.billing.service import payment_view

    cid = customer["id"]
    target = values["target"]
    if target != "all" and "service" not in errors:
        services = {
            r["service"]
            for r in await Connection.select(Connection.service).where(Connection.customer == cid)
        }
        if target not in services:
            errors["service"] = _("This customer has no such connection.")
    if values["reference"] and "reference" not in errors:
        used = await Payment.raw(
            "SELECT p.number FROM billing_payments p WHERE p.office_code = {} "
            "AND p.reference = {} AND NOT EXISTS "
            "(SELECT 1 FROM billing_reversals r WHERE r.payment = p.id)",
            settings.office_code,
            values["reference"],
        )
        if used:
            errors["reference"] = _(
                "This reference was already used for invoice %(number)s.",
                number=used[0]["number"],
            )
    every_open = await open_charges(cid)
    open_rows = [r for r in every_open if target == "all" or r["service"] == target]
    credit = await credit_of(cid)
    open_total = sum(r["amount"] - r["paid"] for r in open_rows)
    credit_used = min(credit, open_total)
    due = open_total - credit_used
    if "amount" not in errors and "service" not in errors:
        problem = rules.amount_problem(
            values["amount"], due, settings.min_payment_minor, _money(settings)
        )
        if problem:
            errors["amount"] = problem
    if errors:
        raise ValidationFailed(errors)

    amount = values["amount"]
    by_id = {r["id"]: r for r in open_rows}
    allocations = rules.allocate(
        [(r["id"], r["amount"] - r["paid"]) for r in open_rows], amount + credit_used
    )
    allocated = sum(a for _, a in allocations)
    credit_after = credit + amount - allocated
    await _settle(allocations)
    everything_open = sum(r["amount"] - r["paid"] for r in every_open) - allocated
    due_after = max(everything_open - credit_after, 0)

    now = clock.now()
    today = clock.today(settings.tz)
    number = await _next_number(settings.office_code, today.year)
    lines = [
        {
            "service": by_id[cid_]["service"],
            "plan_name": by_id[cid_]["plan_name"],
            "year": by_id[cid_]["year"],
            "month": by_id[cid_]["month"],
            "amount": part,
        }
        for cid_, part in allocations
    ]
    role = getattr(actor, "role", "")
    payment = Payment(
        number=number,
        office_code=settings.office_code,
        customer=cid,
        amount=amount,
        mode=values["mode"],
        reference=values["reference"],
        target=target,
        received_by=_actor_id(actor),
        received_by_name="online" if role == "customer" else getattr(actor, "display_name", ""),
        actor_role=role,
        idempotency_key=stored_key,
        paid_on=today,
        created_at=now,
        credit_after=credit_after,
        due_after=due_after,
        snapshot=_snapshot(settings, customer),
    )
    await payment.save()
    if allocations:
        await Allocation.insert(
            *[Allocation(payment=payment.id, charge=c, amount=a) for c, a in allocations]
        )
    if credit_after != credit:
        await _set_credit(cid, credit_after)
    await charges.refresh_expiry(
        sorted({by_id[c]["connection"] for c, _ in allocations}, key=str), today=today
    )
    if customer["email"]:
        with i18n.use_locale(settings.locale):
            months = [rules.month_label(line["year"], line["month"]) for line in lines]
        await mail.queue(
            settings=settings,
            kind="invoice",
            to=customer["email"],
            context={
                "name": customer["name"],
                "number": number,
                "amount_paid": amount,
                "months": list(dict.fromkeys(months)),
                "remaining_due": due_after,
            },
            attachments=[{"invoice": number}],
        )
    # Oldest month first, cable before broadband: the order get_payment reads the lines in.
    return payment_view(payment.to_dict(), lines)


async def _settle(allocations: list[tuple[Any, int]]) -> None:
    """Add each allocation to its month's paid amount, in one statement."""
    if not allocations:
        return
    cases = " ".join("WHEN {} THEN CAST({} AS INTEGER)" for _ in allocations)
    ids = ", ".join("{}" for _ in allocations)
    await Charge.raw(
        f"UPDATE billing_charges SET paid = paid + CASE id {cases} END "  # noqa: S608
        f"WHERE id IN ({ids})",
        *[value for pair in allocations for value in pair],
        *[charge_id for charge_id, _ in allocations],
    )


def _prerender(number: str) -> None:
    """Ask the worker to render the invoice PDF now, so printing it later is instant."""
    try:
        from appliance.invoices.tasks import render_invoice_pdf
    except ImportError:
        return
    from appliance.jobs.queue import enqueue_quietly

    enqueue_quietly(render_invoice_pdf, number)


async def reverse_payment(
    number: str, reason: str, *, actor: Any, settings: Settings
) -> dict[str, Any]:
    """An admin's correction: the payment stays on record with a reversal entry beside it,
    and the months it settled are open again. Its invoice number is never given out again."""
    from appliance.billing.service import get_payment

    if getattr(actor, "role", None) not in ADMIN_ROLES:
        raise PermissionDenied(_("Only an admin can reverse a payment."))
    reason = " ".join(str(reason or "").split())
    if len(reason) < 3:
        raise ValidationFailed({"reason": _("Say why this payment is reversed.")})
    if len(reason) > REASON_MAX:
        raise ValidationFailed({"reason": _("Use at most %(n)s characters.", n=REASON_MAX)})
    today = clock.today(settings.tz)
    async with write_transaction():
        await sql.lock_billing(settings.office_code)
        rows = await Payment.select(Payment.id, Payment.customer, Payment.amount).where(
            Payment.number == number
        )
        if not rows:
            raise NotFound(_("There is no invoice with this number."))
        payment = rows[0]
        if await PaymentReversal.exists().where(PaymentReversal.payment == payment["id"]):
            raise Conflict(_("This payment was already reversed."))
        parts = await Allocation.raw(
            "SELECT a.charge, a.amount, c.connection FROM billing_allocations a "
            "JOIN billing_charges c ON c.id = a.charge WHERE a.payment = {}",
            payment["id"],
        )
        for part in parts:
            await Charge.update({Charge.paid: Charge.paid - part["amount"]}).where(
                Charge.id == part["charge"]
            )
        allocated = sum(p["amount"] for p in parts)
        credit = await credit_of(payment["customer"])
        if allocated != payment["amount"]:
            await _set_credit(payment["customer"], credit + allocated - payment["amount"])
        await PaymentReversal(
            payment=payment["id"],
            reason=reason,
            reversed_by=_actor_id(actor),
            reversed_by_name=getattr(actor, "display_name", ""),
        ).save()
        await charges.refresh_expiry(sorted({p["connection"] for p in parts}, key=str), today=today)
        await audit_log.record(
            actor=actor,
            entity="payment",
            entity_id=payment["id"],
            action="reverse",
            changes={"number": number, "amount": payment["amount"], "reason": reason},
        )
    dashboard_cache.invalidate()
    log.info("payment reversed", extra={"number": number})
    return await get_payment(number)
