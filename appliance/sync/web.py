"""Sync pages. On a box: the admin's sync status with "Sync now". At central: the owner's offices
and boxes (enrollment codes, revoking), the conflict review, dead letters, overpayment flags and
the consolidated payments list, each filterable by office."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Request, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from appliance.errors import ValidationFailed
from appliance.sync import review
from appliance.sync.central import ENROLL_CODE_HOURS
from appliance.web.auth import ADMIN
from appliance.web.forms import form_data, page_number, see_other, settings_of

# -- the box -----------------------------------------------------------------------------------


async def _box_page(request: Request, *, outcome: review.RoundOutcome | None = None) -> Template:
    return Template(
        "sync/box.html",
        context={
            "status": await review.box_status(),
            "outcome": outcome,
            "done": request.query_params.get("done", ""),
        },
    )


@get("/sync", opt={"roles": ADMIN})
async def sync_page(request: Request) -> Template | Redirect:
    if review.is_central(settings_of(request)):
        return see_other("/sync/offices")
    return await _box_page(request)


@post("/sync/now", opt={"roles": ADMIN}, status_code=200)
async def sync_now(request: Request) -> Template | Redirect:
    if review.is_central(settings_of(request)):
        return see_other("/sync/offices")
    return await _box_page(request, outcome=await review.sync_now())


# -- offices and boxes (central) ---------------------------------------------------------------


async def _central_context(request: Request, section: str, office: str = "") -> dict[str, Any]:
    settings = settings_of(request)
    review.require_central(settings)
    return {
        "section": section,
        "counts": await review.open_counts(),
        "office_choices": await review.office_choices(),
        "office": await review.office_filter(settings, office),
    }


async def _offices_page(
    request: Request,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    issued: dict[str, Any] | None = None,
    status: int = 200,
) -> Template:
    context = await _central_context(request, "offices")
    return Template(
        "sync/offices.html",
        status_code=status,
        context={
            **context,
            "offices": await review.offices(),
            "values": values or {},
            "errors": errors or {},
            "issued": issued,
            "code_hours": ENROLL_CODE_HOURS,
            "revoked": request.query_params.get("revoked") == "1",
        },
    )


@get("/sync/offices", opt={"roles": ADMIN})
async def offices_page(request: Request) -> Template:
    return await _offices_page(request)


@post("/sync/offices", opt={"roles": ADMIN}, status_code=200)
async def create_office(request: Request) -> Template:
    review.require_central(settings_of(request))
    data = await form_data(request)
    try:
        office = await review.central.create_office(data.get("code", ""), data.get("name", ""))
    except ValidationFailed as exc:
        return await _offices_page(request, values=data, errors=exc.errors, status=422)
    return await _offices_page(request, issued=office)


@post("/sync/offices/{office_code:str}/code", opt={"roles": ADMIN}, status_code=200)
async def new_code(request: Request, office_code: FromPath[str]) -> Template:
    review.require_central(settings_of(request))
    code = await review.central.new_enroll_code(office_code)
    return await _offices_page(request, issued={"code": office_code, "enroll_code": code})


@get("/sync/boxes/{node_id:uuid}/revoke", opt={"roles": ADMIN})
async def confirm_revoke(request: Request, node_id: FromPath[UUID]) -> Template:
    context = await _central_context(request, "offices")
    return Template("sync/revoke.html", context={**context, "box": await review.get_box(node_id)})


@post("/sync/boxes/{node_id:uuid}/revoke", opt={"roles": ADMIN})
async def revoke_box(request: Request, node_id: FromPath[UUID]) -> Redirect:
    review.require_central(settings_of(request))
    await review.revoke_box(node_id, actor=request.user)
    return see_other("/sync/offices?revoked=1")


# -- conflicts, dead letters, overpayments ---------------------------------------------------------


@get("/sync/conflicts", opt={"roles": ADMIN})
async def conflicts_page(
    request: Request, office: FromQuery[str] = "", reviewed: FromQuery[bool] = False
) -> Template:
    context = await _central_context(request, "conflicts", office)
    rows = await review.list_conflicts(office=context["office"], reviewed=reviewed)
    return Template(
        "sync/conflicts.html",
        context={
            **context,
            "conflicts": rows,
            "reviewed": reviewed,
            "done": request.query_params.get("done", ""),
        },
    )


def _back(request: Request, path: str, data: dict[str, str], done: str) -> Redirect:
    """Back to the list the form was on (a box has its lists on the sync page)."""
    if not review.is_central(settings_of(request)):
        return see_other(f"/sync?done={done}")
    office = "".join(ch for ch in data.get("office", "") if ch.isalnum())[:8]
    return see_other(f"{path}?done={done}" + (f"&office={office}" if office else ""))


@post("/sync/conflicts/{conflict_id:uuid}/keep", opt={"roles": ADMIN})
async def keep_conflict(request: Request, conflict_id: FromPath[UUID]) -> Redirect:
    data = await form_data(request)
    await review.keep_conflict(conflict_id, actor=request.user)
    return _back(request, "/sync/conflicts", data, "kept")


@post("/sync/conflicts/{conflict_id:uuid}/reverse", opt={"roles": ADMIN})
async def reverse_conflict(request: Request, conflict_id: FromPath[UUID]) -> Redirect:
    data = await form_data(request)
    await review.reverse_conflict(conflict_id, actor=request.user, settings=settings_of(request))
    return _back(request, "/sync/conflicts", data, "reversed")


@get("/sync/dead-letters", opt={"roles": ADMIN})
async def dead_letters_page(
    request: Request, office: FromQuery[str] = "", resolved: FromQuery[bool] = False
) -> Template:
    context = await _central_context(request, "letters", office)
    rows = await review.list_dead_letters(office=context["office"], resolved=resolved)
    return Template(
        "sync/dead_letters.html",
        context={
            **context,
            "letters": rows,
            "resolved": resolved,
            "done": request.query_params.get("done", ""),
        },
    )


@post("/sync/dead-letters/{letter_id:uuid}/resolve", opt={"roles": ADMIN})
async def resolve_dead_letter(request: Request, letter_id: FromPath[UUID]) -> Redirect:
    data = await form_data(request)
    await review.resolve_dead_letter(letter_id, actor=request.user)
    return _back(request, "/sync/dead-letters", data, "resolved")


@get("/sync/overpayments", opt={"roles": ADMIN})
async def overpayments_page(
    request: Request, office: FromQuery[str] = "", reviewed: FromQuery[bool] = False
) -> Template:
    context = await _central_context(request, "overpayments", office)
    rows = await review.list_overpayments(office=context["office"], reviewed=reviewed)
    return Template(
        "sync/overpayments.html",
        context={
            **context,
            "flags": rows,
            "reviewed": reviewed,
            "done": request.query_params.get("done", ""),
        },
    )


@post("/sync/overpayments/{flag_id:uuid}/review", opt={"roles": ADMIN})
async def review_overpayment(request: Request, flag_id: FromPath[UUID]) -> Redirect:
    review.require_central(settings_of(request))
    data = await form_data(request)
    await review.review_overpayment(flag_id, actor=request.user)
    return _back(request, "/sync/overpayments", data, "reviewed")


# -- the consolidated payments list ----------------------------------------------------------------


@get("/payments", opt={"roles": ADMIN})
async def payments_page(
    request: Request, office: FromQuery[str] = "", page: FromQuery[str] = "1"
) -> Template:
    settings = settings_of(request)
    office = await review.office_filter(settings, office)
    result = await review.list_payments(office=office, page=page_number(page))
    return Template(
        "sync/payments.html",
        context={
            "result": result,
            "office": office,
            "office_choices": await review.office_choices() if review.is_central(settings) else [],
        },
    )


ROUTES = [
    sync_page,
    sync_now,
    offices_page,
    create_office,
    new_code,
    confirm_revoke,
    revoke_box,
    conflicts_page,
    keep_conflict,
    reverse_conflict,
    dead_letters_page,
    resolve_dead_letter,
    overpayments_page,
    review_overpayment,
    payments_page,
]
