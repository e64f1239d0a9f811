"""Figures for the admin's and the customer's dashboards."""

from __future__ import annotations

from typing import Any

from appliance import clock
from appliance.customers import service as customers
from appliance.settings import Settings


async def admin_dashboard(settings: Settings) -> dict[str, Any]:
    today = clock.today(settings.tz)
    return {
        "today": today,
        "connections": await customers.connection_counts(),
        "renewals_today": await customers.renewals_due(today),
    }


async def customer_dashboard(customer_id: Any, settings: Settings) -> dict[str, Any]:
    customer = await customers.get_customer(customer_id, include_archived=False)
    return {"today": clock.today(settings.tz), "customer": customer}
