"""Dashboards: the office's at ``/``, the customer's at ``/portal``."""

from __future__ import annotations

from litestar import Request, get
from litestar.response import Redirect, Template

from appliance.dashboard import service as dashboard
from appliance.web.auth import ANYONE, CUSTOMER
from appliance.web.forms import see_other, settings_of


@get("/", opt={"roles": ANYONE})
async def home(request: Request) -> Template | Redirect:
    role = request.user.role
    if role == "customer":
        return see_other("/portal")
    if role == "agent":
        return see_other("/collect")
    return Template(
        "dashboard/admin.html", context=await dashboard.admin_dashboard(settings_of(request))
    )


@get("/portal", opt={"roles": CUSTOMER})
async def portal(request: Request) -> Template:
    return Template(
        "dashboard/customer.html",
        context=await dashboard.customer_dashboard(request.user.customer_id, settings_of(request)),
    )


ROUTES = [home, portal]
