"""API: recording, listing and reversing payments.

``recordPayment`` honours an ``Idempotency-Key`` header: the same key from the same user returns
the payment recorded the first time (same body, 201), never a second one. Bad input answers 422
with a message per field; staff may pay for any customer, a customer only online for themselves.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from appliance import clock
from appliance.billing import service as billing
from appliance.customers import service as customers
from appliance.errors import ValidationFailed
from appliance.i18n import gettext as _
from appliance.web.auth import ADMIN, ANYONE
from appliance.web.forms import settings_of

FIELDS = ("amount", "mode", "reference", "service")


class PaymentLine(msgspec.Struct):
    service: str
    plan_name: str
    year: int
    month: int
    amount: int


class PaymentOut(msgspec.Struct):
    """A payment and its invoice. Amounts are integers in minor units (cents)."""

    number: str
    customer_id: uuid.UUID
    issued_at: dt.datetime
    paid_on: dt.date
    amount: int
    mode: str
    reference: str
    target: str
    received_by: str
    credit: int
    remaining_due: int
    reversed: bool
    reversal_reason: str
    lines: list[PaymentLine]
    invoice_url: str
    pdf_url: str

    @classmethod
    def of(cls, payment: dict[str, Any]) -> PaymentOut:
        known = set(cls.__struct_fields__) - {"invoice_url", "pdf_url"}
        data = {k: v for k, v in payment.items() if k in known}
        data["invoice_url"] = f"/api/v1/invoices/{payment['number']}"
        data["pdf_url"] = f"/api/v1/invoices/{payment['number']}/pdf"
        return msgspec.convert(data, cls, from_attributes=True)


class GridCell(msgspec.Struct):
    month: int
    state: str
    amount: int
    paid: int


class PaymentList(msgspec.Struct):
    customer_id: uuid.UUID
    year: int
    amount_due: int
    credit: int
    grid: dict[str, list[GridCell]]
    payments: list[PaymentOut]


class ReversalIn(msgspec.Struct):
    reason: str = ""


def _text(value: Any, field: str, errors: dict[str, str]) -> str:
    """JSON values as the form's text: numbers become their decimal text, anything else that is
    not a string is refused at its field (so ``true`` is never an amount)."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        errors[field] = _("Send this as text or a number.")
        return ""
    return value if isinstance(value, str) else str(value)


def payment_input(body: Any, user: Any) -> tuple[Any, dict[str, str]]:
    """``(customer_id, form-like data)`` from the JSON body; ValidationFailed for its shape."""
    if not isinstance(body, dict):
        raise ValidationFailed({"": _("Send a JSON object.")})
    errors: dict[str, str] = {}
    data = {field: _text(body.get(field), field, errors) for field in FIELDS}
    customer_id = body.get("customer_id")
    if customer_id is None and user.role == "customer":
        customer_id = user.customer_id
    if not isinstance(customer_id, str | uuid.UUID) and user.role != "customer":
        errors["customer_id"] = _("Say which customer pays (customer_id).")
    if errors:
        raise ValidationFailed(errors)
    return customer_id, data


def _field_names(exc: ValidationFailed) -> ValidationFailed:
    """The service calls the customer field ``customer``; the API's body says ``customer_id``."""
    if "customer" not in exc.errors:
        return exc
    errors = {("customer_id" if k == "customer" else k): v for k, v in exc.errors.items()}
    return ValidationFailed(errors, exc.message)


@post(
    "/payments",
    opt={"roles": ANYONE},
    operation_id="recordPayment",
    tags=["billing"],
    summary="Record a payment (cash or online) and issue its invoice",
    description=(
        'Body: customer_id (a customer may leave it out), amount (text like "120.50" or a '
        "number), mode (cash or online; customers: online), reference (online), service (all, "
        "cable or broadband). Send an Idempotency-Key header (8-100 letters, digits or - _ . :) "
        "so a retried request returns the payment already recorded instead of a second one."
    ),
    status_code=201,
)
async def record_payment(
    request: Request[Any, Any, Any], data: JSONBody[dict[str, Any]]
) -> PaymentOut:
    customer_id, values = payment_input(data, request.user)
    try:
        payment = await billing.record_payment(
            customer_id,
            values,
            actor=request.user,
            settings=settings_of(request),
            idempotency_key=request.headers.get("idempotency-key"),
        )
    except ValidationFailed as exc:
        raise _field_names(exc) from exc
    return PaymentOut.of(payment)


@get(
    "/payments",
    opt={"roles": ANYONE},
    operation_id="listPayments",
    tags=["billing"],
    summary="A customer's payments of a year, with the month grid and what is due now",
)
async def list_payments(
    request: Request[Any, Any, Any],
    customer_id: FromQuery[str | None] = None,
    year: FromQuery[str | None] = None,
) -> PaymentList:
    settings = settings_of(request)
    user = request.user
    if customer_id is None:
        if user.role != "customer":
            raise ValidationFailed({"customer_id": _("Say whose payments (customer_id).")})
        customer_id = str(user.customer_id)
    picked = clock.today(settings.tz).year
    if year is not None:
        try:
            picked = int(year)
        except ValueError:
            picked = 0
        if not 1970 <= picked <= 9998:
            raise ValidationFailed({"year": _("Give a year like 2026.")})
    customers.ensure_can_see(user, customer_id)
    customer = await customers.get_customer(customer_id)
    data = await billing.customer_year(customer["id"], picked, settings=settings)
    return PaymentList(
        customer_id=customer["id"],
        year=picked,
        amount_due=data["account"]["due"],
        credit=data["account"]["credit"],
        grid={
            service: [
                GridCell(month=c["month"], state=c["state"], amount=c["amount"], paid=c["paid"])
                for c in cells
            ]
            for service, cells in data["grid"].items()
        },
        payments=[PaymentOut.of(p) for p in data["payments"]],
    )


@post(
    "/payments/{number:str}/reversal",
    opt={"roles": ADMIN},
    operation_id="reversePayment",
    tags=["billing"],
    summary="Reverse a payment (admins): both stay on record, its months are open again",
    status_code=200,
)
async def reverse_payment(
    request: Request[Any, Any, Any], number: FromPath[str], data: JSONBody[ReversalIn]
) -> PaymentOut:
    payment = await billing.reverse_payment(
        number.strip().upper(), data.reason, actor=request.user, settings=settings_of(request)
    )
    return PaymentOut.of(payment)


ROUTES = [record_payment, list_payments, reverse_payment]
