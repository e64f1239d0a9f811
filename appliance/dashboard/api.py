"""API: dashboard figures."""

from __future__ import annotations

import datetime as dt

import msgspec
from litestar import Request, get

from appliance.dashboard import service as dashboard
from appliance.web.auth import ADMIN
from appliance.web.forms import settings_of


class Dashboard(msgspec.Struct):
    today: dt.date
    connections: dict[str, dict[str, int]]
    renewals_today: dict[str, int]
    unread_complaints: int
    received_this_month: dict[str, int]
    pending_this_month: dict[str, int]


@get(
    "/dashboard",
    opt={"roles": ADMIN},
    operation_id="getDashboard",
    tags=["dashboard"],
    summary=(
        "Connection counts by service and status, renewals due today, unread complaints, "
        "money received and pending this month per service (minor units)"
    ),
)
async def get_dashboard(request: Request) -> Dashboard:
    data = await dashboard.admin_dashboard(settings_of(request))
    return Dashboard(
        today=data["today"],
        connections=data["connections"],
        renewals_today=data["renewals_today"],
        unread_complaints=data["unread_complaints"],
        received_this_month=data["money"]["received"],
        pending_this_month=data["money"]["pending"],
    )


ROUTES = [get_dashboard]
