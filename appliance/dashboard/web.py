"""Dashboards: the office's at ``/``, the customer's at ``/portal``."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.params import FromQuery
from litestar.response import Redirect, Template
from markupsafe import Markup

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
    context["charts_html"] = _charts_html(request, context["charts"])
    if review.is_central(settings):
        context["office_choices"] = await review.office_choices()
    return Template("dashboard/admin.html", context=context)


# The charts' HTML (two drawings and three tables, ~40% of the page's rendering) is rendered once
# per set of kept figures: admin_dashboard() hands out the same charts object while its figures
# are kept (in one language), and a new one whenever they are computed again.
_rendered: dict[int, tuple[Any, Markup]] = {}
_KEEP_RENDERED = 16


def _charts_html(request: Request, charts: dict[str, Any]) -> Markup:
    kept = _rendered.get(id(charts))
    if kept is not None and kept[0] is charts:
        return kept[1]
    template = request.app.template_engine.get_template("dashboard/_charts.html")
    html = Markup(template.render(charts=charts))  # noqa: S704 - Jinja escaped it
    if len(_rendered) >= _KEEP_RENDERED:
        _rendered.clear()
    _rendered[id(charts)] = (charts, html)
    return html


@get("/portal", opt={"roles": CUSTOMER})
async def portal(request: Request) -> Template:
    return Template(
        "dashboard/customer.html",
        context=await dashboard.customer_dashboard(request.user.customer_id, settings_of(request)),
    )


ROUTES = [home, portal]
