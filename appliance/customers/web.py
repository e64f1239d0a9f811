"""Customer pages: the admin's list, search, form and detail; the customer's own profile."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Request, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from appliance.accounts.tables import User
from appliance.audit import service as audit_log
from appliance.customers import service as customers
from appliance.customers.tables import STATUSES
from appliance.customers.validation import CONTACT_FIELDS
from appliance.errors import NeedsConfirmation, ValidationFailed
from appliance.plans import service as plans
from appliance.sync import review
from appliance.web.auth import ADMIN, CUSTOMER, STAFF
from appliance.web.forms import form_data, page_number, see_other, settings_of


async def _form(
    values: dict[str, Any],
    errors: dict[str, str],
    *,
    customer=None,
    confirm: bool = False,
    status: int = 200,
) -> Template:
    return Template(
        "customers/form.html",
        status_code=status,
        context={
            "values": values,
            "errors": errors,
            "customer": customer,
            "confirm": confirm,
            "plans": await plans.list_plans(),
            "statuses": STATUSES,
            # At central a new customer is given to one office (see create_customer).
            "office_choices": await review.office_choices() if customer is None else [],
        },
    )


def _form_values(customer: dict[str, Any]) -> dict[str, Any]:
    values = {k: v for k, v in customer.items() if k != "connections"}
    for service, conn in customer["connections"].items():
        for key in ("plan", "device_id", "registered_on", "expires_on", "status"):
            values[f"{service}_{key}"] = conn[key]
    return {k: ("" if v is None else str(v)) for k, v in values.items()}


@get("/customers", opt={"roles": STAFF})
async def customer_list(
    request: Request,
    q: FromQuery[str] = "",
    page: FromQuery[str] = "1",
    archived: FromQuery[bool] = False,
    office: FromQuery[str] = "",
) -> Template:
    settings = settings_of(request)
    office = await review.office_filter(settings, office)
    result = await customers.search_customers(
        q, page=page_number(page), archived=archived, office=office
    )
    name = "customers/_results.html" if request.headers.get("hx-request") else "customers/list.html"
    choices = await review.office_choices() if review.is_central(settings) else []
    return Template(
        name,
        context={
            "result": result,
            "q": q,
            "archived": archived,
            "office": office,
            "office_choices": choices,
        },
    )


@get("/customers/new", opt={"roles": ADMIN})
async def new_customer(request: Request) -> Template:
    from appliance import clock

    today = clock.today(settings_of(request).tz).isoformat()
    return await _form(
        {"cable_registered_on": today, "broadband_registered_on": today, "country": "Brasil"}, {}
    )


@post("/customers", opt={"roles": ADMIN}, status_code=200)
async def create_customer(request: Request) -> Template | Redirect:
    data = await form_data(request)
    try:
        office = await review.check_office(settings_of(request), data.get("office"))
        customer = await customers.create_customer(
            data,
            actor=request.user,
            settings=settings_of(request),
            confirm_duplicates=data.get("confirm") == "1",
            office=office,
        )
    except NeedsConfirmation as exc:
        return await _form(data, exc.errors, confirm=True, status=422)
    except ValidationFailed as exc:
        return await _form(data, exc.errors, status=422)
    return see_other(f"/customers/{customer['id']}?created=1")


@get("/customers/{customer_id:uuid}", opt={"roles": STAFF})
async def customer_detail(
    customer_id: FromPath[UUID], created: FromQuery[bool] = False
) -> Template:
    customer = await customers.get_customer(customer_id)
    login = await User.select(User.id, User.locked_until, User.is_active).where(
        User.customer == customer["id"]
    )
    return Template(
        "customers/detail.html",
        context={
            "customer": customer,
            "created": created,
            "login": login[0] if login else None,
            "history": await audit_log.history("customer", customer["id"], limit=20),
        },
    )


@get("/customers/{customer_id:uuid}/edit", opt={"roles": ADMIN})
async def edit_customer(customer_id: FromPath[UUID]) -> Template:
    customer = await customers.get_customer(customer_id)
    return await _form(_form_values(customer), {}, customer=customer)


@post("/customers/{customer_id:uuid}", opt={"roles": ADMIN}, status_code=200)
async def update_customer(customer_id: FromPath[UUID], request: Request) -> Template | Redirect:
    data = await form_data(request)
    customer = await customers.get_customer(customer_id)
    try:
        await customers.update_customer(
            customer_id,
            data,
            actor=request.user,
            settings=settings_of(request),
            confirm_duplicates=data.get("confirm") == "1",
        )
    except NeedsConfirmation as exc:
        return await _form(data, exc.errors, customer=customer, confirm=True, status=422)
    except ValidationFailed as exc:
        return await _form(data, exc.errors, customer=customer, status=422)
    return see_other(f"/customers/{customer_id}")


@post("/customers/{customer_id:uuid}/archive", opt={"roles": ADMIN})
async def archive_customer(customer_id: FromPath[UUID], request: Request) -> Redirect:
    await customers.archive_customer(customer_id, actor=request.user)
    return see_other(f"/customers/{customer_id}")


@post("/customers/{customer_id:uuid}/restore", opt={"roles": ADMIN})
async def restore_customer(customer_id: FromPath[UUID], request: Request) -> Redirect:
    await customers.restore_customer(customer_id, actor=request.user)
    return see_other(f"/customers/{customer_id}")


@get("/portal/profile", opt={"roles": CUSTOMER})
async def profile_page(request: Request) -> Template:
    customer = await customers.get_customer(request.user.customer_id)
    return Template(
        "customers/profile.html",
        context={
            "values": _form_values(customer),
            "errors": {},
            "customer": customer,
            "saved": False,
        },
    )


@post("/portal/profile", opt={"roles": CUSTOMER}, status_code=200)
async def update_profile(request: Request) -> Template:
    data = await form_data(request)
    contact = {k: v for k, v in data.items() if k in CONTACT_FIELDS}
    customer = await customers.get_customer(request.user.customer_id)
    try:
        customer = await customers.update_customer(
            request.user.customer_id,
            contact,
            actor=request.user,
            settings=settings_of(request),
            confirm_duplicates=True,
        )
    except ValidationFailed as exc:
        return Template(
            "customers/profile.html",
            status_code=422,
            context={
                "values": {**_form_values(customer), **contact},
                "errors": exc.errors,
                "customer": customer,
                "saved": False,
            },
        )
    return Template(
        "customers/profile.html",
        context={
            "values": _form_values(customer),
            "errors": {},
            "customer": customer,
            "saved": True,
        },
    )


ROUTES = [
    customer_list,
    new_customer,
    create_customer,
    customer_detail,
    edit_customer,
    update_customer,
    archive_customer,
    restore_customer,
    profile_page,
    update_profile,
]
