"""Plan pages for admins."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Request, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from appliance.errors import ValidationFailed
from appliance.i18n import decimal_amount
from appliance.plans import service as plans
from appliance.plans.tables import SERVICES
from appliance.web.auth import ADMIN
from appliance.web.forms import form_data, see_other

OPT = {"roles": ADMIN}


def _form(
    values: dict[str, Any],
    errors: dict[str, str],
    *,
    plan: dict[str, Any] | None = None,
    status: int = 200,
) -> Template:
    return Template(
        "plans/form.html",
        status_code=status,
        context={"values": values, "errors": errors, "plan": plan, "services": SERVICES},
    )


@get("/plans", opt=OPT)
async def plan_list() -> Template:
    return Template("plans/list.html", context={"plans": await plans.list_plans()})


@get("/plans/new", opt=OPT)
async def new_plan(service: FromQuery[str | None] = None) -> Template:
    return _form({"service": service or "cable"}, {})


@post("/plans", opt=OPT, status_code=200)
async def create_plan(request: Request) -> Template | Redirect:
    data = await form_data(request)
    try:
        await plans.create_plan(data, actor=request.user)
    except ValidationFailed as exc:
        return _form(data, exc.errors, status=422)
    return see_other("/plans")


@get("/plans/{plan_id:uuid}", opt=OPT)
async def edit_plan(plan_id: FromPath[UUID]) -> Template:
    plan = await plans.get_plan(plan_id)
    values = {**plan, "monthly_price": decimal_amount(plan["monthly_price"])}
    return _form(values, {}, plan=plan)


@post("/plans/{plan_id:uuid}", opt=OPT, status_code=200)
async def update_plan(plan_id: FromPath[UUID], request: Request) -> Template | Redirect:
    data = await form_data(request)
    plan = await plans.get_plan(plan_id)
    try:
        await plans.update_plan(plan_id, data, actor=request.user)
    except ValidationFailed as exc:
        return _form({**data, "service": plan["service"]}, exc.errors, plan=plan, status=422)
    return see_other("/plans")


@post("/plans/{plan_id:uuid}/retire", opt=OPT)
async def retire_plan(plan_id: FromPath[UUID], request: Request) -> Redirect:
    data = await form_data(request)
    await plans.set_retired(plan_id, data.get("retired") != "0", actor=request.user)
    return see_other("/plans")


ROUTES = [plan_list, new_plan, create_plan, edit_plan, update_plan, retire_plan]
