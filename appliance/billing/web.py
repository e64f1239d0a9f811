"""Billing pages: the admin's payment details (/billing), the field agent's collection screen
(/collect), and the customer's payments and invoice viewer (/portal/payments, /portal/invoices).

Every payment form carries a fresh idempotency key; a second submit of the same form (a double
click, a retry on flaky Wi-Fi) gets the payment the first one recorded.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any
from uuid import UUID

from litestar import Request, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from appliance import clock, i18n
from appliance.billing import rules
from appliance.billing import service as billing
from appliance.customers import service as customers
from appliance.errors import ValidationFailed
from appliance.i18n import gettext as _
from appliance.invoices.qr import payment_qr
from appliance.settings import Settings
from appliance.web.auth import ADMIN, CUSTOMER, STAFF
from appliance.web.forms import form_data, see_other, settings_of

log = logging.getLogger(__name__)

PICK_SIZE = 10
FIRST_YEAR = 1970


def new_key() -> str:
    """The idempotency key of one rendering of a payment form."""
    return secrets.token_urlsafe(18)


def state_labels() -> dict[str, str]:
    return {
        "none": "—",
        "scheduled": _("Not billed yet"),
        "waived": _("Not charged"),
        "unpaid": _("Unpaid"),
        "partial": _("Partly paid"),
        "paid": _("Paid"),
    }


def mode_labels() -> dict[str, str]:
    return {"cash": _("Cash"), "online": _("Online")}


def target_options(services: list[str]) -> list[tuple[str, str]]:
    from appliance.plans.service import service_label

    options = [("all", _("Everything due (all services)"))]
    return options + [(s, service_label(s)) for s in ("cable", "broadband") if s in services]


def pick_year(value: str, settings: Settings) -> int:
    """The year asked for in the address, or this year for anything else."""
    this_year = clock.today(settings.tz).year
    try:
        year = int(value)
    except (TypeError, ValueError):
        return this_year
    return year if FIRST_YEAR <= year <= this_year + 1 else this_year


def pick_month(value: str, settings: Settings) -> int:
    try:
        month = int(value)
    except (TypeError, ValueError):
        return clock.today(settings.tz).month
    return month if 1 <= month <= 12 else clock.today(settings.tz).month


def _customer_id(value: str) -> UUID | None:
    try:
        return UUID(value)
    except (TypeError, ValueError):
        return None


def payment_qr_for(settings: Settings, amount: int, crf: str) -> dict[str, str] | None:
    if amount <= 0:
        return None
    return payment_qr(settings, amount, crf)


def pending_labels(account: dict[str, Any]) -> list[str]:
    return [rules.month_label(y, m) for y, m in account["pending_months"]]


def _labels() -> dict[str, Any]:
    return {"states": state_labels(), "modes": mode_labels()}


async def _details(customer_id: Any, year: int, settings: Settings) -> dict[str, Any]:
    """Everything a payment page shows about one customer (a removed one too, without the
    payment form)."""
    customer = await customers.get_customer(customer_id)
    data = await billing.customer_year(customer["id"], year, settings=settings)
    account = data["account"]
    return {
        "customer": customer,
        **data,
        "pending": pending_labels(account),
        "targets": target_options(list(customer["connections"])),
        "qr": payment_qr_for(settings, account["due"], customer["crf"]),
        **_labels(),
    }


def _form_values(details: dict[str, Any]) -> dict[str, str]:
    """A blank payment form: the whole due in the amount, everything as the target."""
    due = details["account"]["due"]
    return {"amount": i18n.decimal_amount(due) if due else "", "service": "all", "mode": "cash"}


def _just_paid(details: dict[str, Any], number: str) -> dict[str, Any] | None:
    """The payment named in ``?paid=`` if it is this customer's (never trust the address)."""
    return next((p for p in details["payments"] if p["number"] == number), None)


async def _take(request: Request, customer_id: Any) -> tuple[dict[str, Any] | None, Any]:
    """Record the posted payment: ``(payment, None)`` or ``(None, (values, errors))``."""
    values = await form_data(request)
    key = values.get("idempotency_key") or None
    try:
        payment = await billing.record_payment(
            customer_id,
            values,
            actor=request.user,
            settings=settings_of(request),
            idempotency_key=key,
        )
    except ValidationFailed as exc:
        values.setdefault("idempotency_key", new_key())
        return None, (values, exc.errors)
    return payment, None


# -- admin: payment details ---------------------------------------------------------------------


async def _details_page(
    request: Request,
    customer_id: Any,
    year: int,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    reverse: dict[str, Any] | None = None,
    paid: str = "",
    status: int = 200,
) -> Template:
    details = await _details(customer_id, year, settings_of(request))
    values = values if values is not None else _form_values(details)
    values.setdefault("idempotency_key", new_key())
    return Template(
        "billing/details.html",
        status_code=status,
        context={
            **details,
            "values": values,
            "errors": errors or {},
            "reverse": reverse or {},
            "just_paid": _just_paid(details, paid),
        },
    )


@get("/billing", opt={"roles": ADMIN})
async def payment_details(
    request: Request,
    q: FromQuery[str] = "",
    customer: FromQuery[str] = "",
    year: FromQuery[str] = "",
    paid: FromQuery[str] = "",
) -> Template:
    """Pick a customer (CRF, name or mobile), then their month grid and payments of a year."""
    settings = settings_of(request)
    cid = _customer_id(customer)
    if cid is not None:
        return await _details_page(request, cid, pick_year(year, settings), paid=paid)
    result = await customers.search_customers(q, per_page=PICK_SIZE) if q.strip() else None
    name = "billing/_pick.html" if request.headers.get("hx-request") else "billing/search.html"
    return Template(name, context={"result": result, "q": q, "base": "/billing"})


@post("/billing/{customer_id:uuid}/payments", opt={"roles": ADMIN}, status_code=200)
async def admin_record_payment(
    request: Request, customer_id: FromPath[UUID]
) -> Template | Redirect:
    settings = settings_of(request)
    payment, failed = await _take(request, customer_id)
    if payment is None:
        values, errors = failed
        year = pick_year(values.get("year", ""), settings)
        return await _details_page(
            request, customer_id, year, values=values, errors=errors, status=422
        )
    year = payment["paid_on"].year
    return see_other(f"/billing?customer={customer_id}&year={year}&paid={payment['number']}")


@post("/billing/payments/{number:str}/reverse", opt={"roles": ADMIN}, status_code=200)
async def admin_reverse_payment(request: Request, number: FromPath[str]) -> Template | Redirect:
    settings = settings_of(request)
    payment = await billing.get_payment(number)
    data = await form_data(request)
    year = pick_year(data.get("year", ""), settings)
    try:
        await billing.reverse_payment(
            payment["number"], data.get("reason", ""), actor=request.user, settings=settings
        )
    except ValidationFailed as exc:
        reverse = {"number": payment["number"], "reason": data.get("reason", "")}
        reverse["error"] = exc.errors.get("reason") or exc.message
        return await _details_page(
            request, payment["customer_id"], year, reverse=reverse, status=422
        )
    return see_other(f"/billing?customer={payment['customer_id']}&year={year}")


# -- field agent: collect -----------------------------------------------------------------------


async def _collect_page(
    request: Request,
    customer_id: Any,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Template:
    settings = settings_of(request)
    details = await _details(customer_id, clock.today(settings.tz).year, settings)
    values = values if values is not None else _form_values(details)
    values.setdefault("idempotency_key", new_key())
    return Template(
        "billing/collect.html",
        status_code=status,
        context={**details, "values": values, "errors": errors or {}, "q": ""},
    )


@get("/collect", opt={"roles": STAFF})
async def collect(
    request: Request, q: FromQuery[str] = "", customer: FromQuery[str] = ""
) -> Template:
    """The field agent's screen: find the customer, see the due, take the money."""
    cid = _customer_id(customer)
    if cid is not None:
        return await _collect_page(request, cid)
    result = await customers.search_customers(q, per_page=PICK_SIZE) if q.strip() else None
    context = {"result": result, "q": q, "base": "/collect"}
    if request.headers.get("hx-request"):
        return Template("billing/_pick.html", context=context)
    return Template("billing/collect.html", context={**context, "customer": None})


@post("/collect/{customer_id:uuid}", opt={"roles": STAFF}, status_code=200)
async def collect_payment(request: Request, customer_id: FromPath[UUID]) -> Template | Redirect:
    payment, failed = await _take(request, customer_id)
    if payment is None:
        values, errors = failed
        return await _collect_page(request, customer_id, values=values, errors=errors, status=422)
    return see_other(f"/collect/receipts/{payment['number']}")


@get("/collect/receipts/{number:str}", opt={"roles": STAFF})
async def collect_receipt(request: Request, number: FromPath[str]) -> Template:
    """After the payment: the invoice to print (A4 or thermal receipt) and the e-mail note."""
    payment = await billing.get_payment(number)
    customer = payment["snapshot"].get("customer") or await customers.get_customer(
        payment["customer_id"]
    )
    return Template(
        "billing/receipt.html",
        context={
            "payment": payment,
            "customer": customer,
            "months": [rules.month_label(x["year"], x["month"]) for x in payment["lines"]],
            **_labels(),
        },
    )


# -- the customer's portal ----------------------------------------------------------------------


async def _portal_page(
    request: Request,
    year: int,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    paid: str = "",
    status: int = 200,
) -> Template:
    details = await _details(request.user.customer_id, year, settings_of(request))
    if values is None:
        values = {**_form_values(details), "mode": "online"}
    values.setdefault("idempotency_key", new_key())
    return Template(
        "billing/portal.html",
        status_code=status,
        context={
            **details,
            "values": values,
            "errors": errors or {},
            "just_paid": _just_paid(details, paid),
        },
    )


@get("/portal/payments", opt={"roles": CUSTOMER})
async def portal_payments(
    request: Request, year: FromQuery[str] = "", paid: FromQuery[str] = ""
) -> Template:
    """The customer's own grid and payments of a year, and paying online."""
    return await _portal_page(request, pick_year(year, settings_of(request)), paid=paid)


@post("/portal/payments", opt={"roles": CUSTOMER}, status_code=200)
async def portal_pay(request: Request) -> Template | Redirect:
    settings = settings_of(request)
    payment, failed = await _take(request, request.user.customer_id)
    if payment is None:
        values, errors = failed
        year = pick_year(values.get("year", ""), settings)
        return await _portal_page(request, year, values=values, errors=errors, status=422)
    year = payment["paid_on"].year
    return see_other(f"/portal/payments?year={year}&paid={payment['number']}")


@get("/portal/invoices", opt={"roles": CUSTOMER})
async def portal_invoices(
    request: Request, year: FromQuery[str] = "", month: FromQuery[str] = ""
) -> Template:
    """The invoice viewer: one month's transactions; each number opens its invoice."""
    settings = settings_of(request)
    picked_year, picked_month = pick_year(year, settings), pick_month(month, settings)
    cid = request.user.customer_id
    return Template(
        "billing/portal_invoices.html",
        context={
            "year": picked_year,
            "month": picked_month,
            "years": await billing.years_of(cid, settings=settings),
            "payments": await billing.list_payments(cid, year=picked_year, month=picked_month),
            "month_label": rules.month_label(picked_year, picked_month),
            "month_names": [(m, i18n.month_name(m)) for m in range(1, 13)],
            **_labels(),
        },
    )


ROUTES = [
    payment_details,
    admin_record_payment,
    admin_reverse_payment,
    collect,
    collect_payment,
    collect_receipt,
    portal_payments,
    portal_pay,
    portal_invoices,
]
