"""Figures for the admin's and the customer's dashboards."""

from __future__ import annotations

import datetime as dt
from typing import Any

from appliance import clock, i18n
from appliance.billing import rules
from appliance.billing import service as billing
from appliance.complaints import service as complaints
from appliance.customers import service as customers
from appliance.dashboard import cache
from appliance.reports import charts
from appliance.settings import Settings


async def admin_dashboard(settings: Settings, *, office: str = "") -> dict[str, Any]:
    """The office's figures; at central every office's, or one office's with ``office``.

    Kept for a few seconds, and dropped at once on a change (:mod:`appliance.dashboard.cache`).
    The charts hold formatted text, so each language has its own copy."""
    today = clock.today(settings.tz)
    data = await cache.figures(
        settings,
        ("admin", office, i18n.current_locale(), today),
        lambda: _admin_figures(settings, today, office),
    )
    return dict(data)  # the caller may add to its page's context


async def _admin_figures(settings: Settings, today: dt.date, office: str) -> dict[str, Any]:
    data = {
        "today": today,
        "office": office,
        "connections": await customers.connection_counts(office=office),
        "renewals_today": await customers.renewals_due(today, office=office),
        "unread_complaints": await complaints.unread_count(office=office),
        "money": await billing.month_figures(settings, today, office=office),
    }
    data["charts"] = await charts.dashboard_charts(
        settings, connections=data["connections"], office=office
    )
    return data


async def customer_dashboard(customer_id: Any, settings: Settings) -> dict[str, Any]:
    customer = await customers.get_customer(customer_id, include_archived=False)
    account = await billing.account(customer["id"])
    return {
        "today": clock.today(settings.tz),
        "customer": customer,
        "account": account,
        "pending": [rules.month_label(y, m) for y, m in account["pending_months"]],
    }
