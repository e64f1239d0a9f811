"""Complaint pages: the office's list and detail at /complaints, the customer's at
/portal/complaints."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Request, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from appliance.complaints import service as complaints
from appliance.complaints.tables import CATEGORIES, STATUSES
from appliance.errors import Conflict, ValidationFailed
from appliance.i18n import gettext as _
from appliance.sync import review
from appliance.web.auth import ADMIN, CUSTOMER
from appliance.web.forms import form_data, page_number, safe_next, see_other, settings_of


def _labels() -> dict[str, Any]:
    return {
        "categories": dict(complaints.category_choices()),
        "statuses": {s: complaints.status_label(s) for s in STATUSES},
    }


def _unread_filter(value: str) -> bool | None:
    return {"1": True, "0": False}.get(value)


# -- the office ---------------------------------------------------------------------------------


@get("/complaints", opt={"roles": ADMIN})
async def complaint_list(
    request: Request,
    status: FromQuery[str] = "",
    category: FromQuery[str] = "",
    unread: FromQuery[str] = "",
    page: FromQuery[str] = "1",
    office: FromQuery[str] = "",
) -> Template:
    settings = settings_of(request)
    filters = {
        "status": status if status in STATUSES else "",
        "category": category if category in CATEGORIES else "",
        "unread": unread if unread in ("0", "1") else "",
        # At central: one office's complaints, or every office's.
        "office": await review.office_filter(settings, office),
    }
    result = await complaints.list_complaints(
        status=filters["status"] or None,
        category=filters["category"] or None,
        unread=_unread_filter(filters["unread"]),
        page=page_number(page),
        office=filters["office"],
    )
    name = "complaints/_list.html" if request.headers.get("hx-request") else "complaints/list.html"
    return Template(
        name,
        context={
            "result": result,
            "filters": filters,
            "unread_total": await complaints.unread_count(office=filters["office"]),
            "office_choices": await review.office_choices() if review.is_central(settings) else [],
            **_labels(),
        },
    )


def _new_form(values: dict[str, str], errors: dict[str, str], *, status: int = 200) -> Template:
    return Template(
        "complaints/new.html",
        status_code=status,
        context={
            "values": values,
            "errors": errors,
            "category_options": complaints.category_choices(),
            "max_message": complaints.MAX_MESSAGE,
        },
    )


@get("/complaints/new", opt={"roles": ADMIN})
async def new_complaint(crf: FromQuery[str] = "") -> Template:
    return _new_form({"crf": crf[:32]}, {})


@post("/complaints", opt={"roles": ADMIN}, status_code=200)
async def create_complaint(request: Request) -> Template | Redirect:
    data = await form_data(request)
    customer = await complaints.customer_by_crf(data.get("crf", ""))
    try:
        if customer is None:
            raise ValidationFailed({"crf": _("No customer has this number.")})
        row = await complaints.raise_complaint(
            customer["id"],
            category=data.get("category", ""),
            message=data.get("message", ""),
            actor=request.user,
            settings=settings_of(request),
        )
    except ValidationFailed as exc:
        return _new_form(data, exc.errors, status=422)
    return see_other(f"/complaints/{row['id']}")


async def _detail(
    complaint_id: Any, *, errors: dict[str, str] | None = None, values=None, status: int = 200
) -> Template:
    return Template(
        "complaints/detail.html",
        status_code=status,
        context={
            "complaint": await complaints.get_complaint(complaint_id),
            "errors": errors or {},
            "values": values or {},
            "max_message": complaints.MAX_MESSAGE,
            **_labels(),
        },
    )


@get("/complaints/{complaint_id:uuid}", opt={"roles": ADMIN})
async def complaint_detail(complaint_id: FromPath[UUID]) -> Template:
    return await _detail(complaint_id)


@post("/complaints/{complaint_id:uuid}/read", opt={"roles": ADMIN})
async def mark_read(complaint_id: FromPath[UUID], request: Request) -> Redirect:
    await complaints.mark_read(complaint_id, actor=request.user)
    data = await form_data(request)
    # Back to the list the button was pressed on, filters kept.
    back = safe_next(data.get("back"), f"/complaints/{complaint_id}")
    if not back.startswith("/complaints"):
        back = f"/complaints/{complaint_id}"
    return see_other(back)


@post("/complaints/{complaint_id:uuid}/notes", opt={"roles": ADMIN}, status_code=200)
async def add_note(complaint_id: FromPath[UUID], request: Request) -> Template | Redirect:
    data = await form_data(request)
    try:
        await complaints.add_note(
            complaint_id,
            text=data.get("note", ""),
            visible_to_customer=data.get("visible") == "1",
            actor=request.user,
        )
    except ValidationFailed as exc:
        return await _detail(complaint_id, errors=exc.errors, values=data, status=422)
    return see_other(f"/complaints/{complaint_id}")


@post("/complaints/{complaint_id:uuid}/resolve", opt={"roles": ADMIN}, status_code=200)
async def resolve(complaint_id: FromPath[UUID], request: Request) -> Template | Redirect:
    data = await form_data(request)
    try:
        await complaints.resolve_complaint(
            complaint_id,
            resolution=data.get("resolution", ""),
            actor=request.user,
            settings=settings_of(request),
        )
    except ValidationFailed as exc:
        return await _detail(complaint_id, errors=exc.errors, values=data, status=422)
    except Conflict as exc:
        return await _detail(complaint_id, errors={"": exc.message}, values=data, status=409)
    return see_other(f"/complaints/{complaint_id}")


# -- the customer -------------------------------------------------------------------------------


async def _portal(
    request: Request, values: dict[str, str], errors: dict[str, str], *, status: int = 200
) -> Template:
    result = await complaints.list_complaints(customer_id=request.user.customer_id, per_page=200)
    return Template(
        "complaints/portal_list.html",
        status_code=status,
        context={
            "result": result,
            "values": values,
            "errors": errors,
            "category_options": complaints.category_choices(),
            "max_message": complaints.MAX_MESSAGE,
            **_labels(),
        },
    )


@get("/portal/complaints", opt={"roles": CUSTOMER})
async def portal_list(request: Request) -> Template:
    return await _portal(request, {}, {})


@post("/portal/complaints", opt={"roles": CUSTOMER}, status_code=200)
async def portal_raise(request: Request) -> Template | Redirect:
    data = await form_data(request)
    try:
        row = await complaints.raise_complaint(
            request.user.customer_id,
            category=data.get("category", ""),
            message=data.get("message", ""),
            actor=request.user,
            settings=settings_of(request),
        )
    except ValidationFailed as exc:
        return await _portal(request, data, exc.errors, status=422)
    return see_other(f"/portal/complaints/{row['id']}?raised=1")


@get("/portal/complaints/{complaint_id:uuid}", opt={"roles": CUSTOMER})
async def portal_detail(
    complaint_id: FromPath[UUID], request: Request, raised: FromQuery[bool] = False
) -> Template:
    complaint = await complaints.get_complaint(complaint_id, viewer=request.user)
    return Template(
        "complaints/portal_detail.html",
        context={"complaint": complaint, "raised": raised, **_labels()},
    )


ROUTES = [
    complaint_list,
    new_complaint,
    create_complaint,
    complaint_detail,
    mark_read,
    add_note,
    resolve,
    portal_list,
    portal_raise,
    portal_detail,
]
