"""Dashboards: the office's at ``/``, the customer's at ``/portal``."""

from __future__ import annotations

from litestar import Request, get
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from appliance.dashboard import service as dashboard
from appliance.sync import review
from appliance.web.auth import ANYONE, CUSTOMER
from appliance.web.forms import see_other, settings_of


@get("/", opt={"roles": ANYONE})
async def home(request: Request, office: FromQuery[str] = "") -> Template | Redirect:
    role = request.user.role
    if role == "customer":
        return see_other("/portal")
    if role == "agent":
        return see_other("/collect")
    settings = settings_of(request)
    # At central the owner sees every office, or one: ?office=CODE.
    office = await review.office_filter(settings, office)
    context = await dashboard.admin_dashboard(settings, office=office)
    if review.is_central(settings):
        context["office_choices"] = await review.office_choices()
    return Template("dashboard/admin.html", context=context)


@get("/portal", opt={"roles": CUSTOMER})
async def portal(request: Request) -> Template:
    return Template(
        "dashboard/customer.html",
        context=await dashboard.customer_dashboard(request.user.customer_id, settings_of(request)),
    )


ROUTES = [home, portal]
