"""A paid invoice recorded through billing (the real payment path), and people to look at it."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from appliance import clock
from tests.conftest import run
from tests.helpers import customer_password, make_customer, make_plan, make_staff


@dataclasses.dataclass
class Person:
    """Whoever records a payment, as the web layer's identity describes them."""

    role: str
    display_name: str
    id: Any = None
    customer_id: Any = None


AGENT = Person("agent", "Field Agent")


async def subscriber(settings, plan: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A customer whose cable connection began this month: one month (100.00) is due."""
    start = clock.today(settings.tz).replace(day=1).isoformat()
    return await make_customer(
        settings, cable_plan=str(plan["id"]), cable_registered_on=start, **overrides
    )


async def pay(settings, customer: dict[str, Any], amount: str = "100", **data: str):
    from appliance.billing import service as billing

    return await billing.record_payment(
        customer["id"],
        {"amount": amount, "mode": "cash", "reference": "", "service": "all", **data},
        actor=AGENT,
        settings=settings,
    )


@pytest.fixture
def office(settings):
    """Ana paid 100.00 cash to a field agent; her invoice is ``number``."""

    async def seed() -> dict[str, Any]:
        plan = await make_plan(service="cable", name="Cable 100", monthly_price="100.00")
        ana = await subscriber(settings, plan, name="Ana Souza", email="ana@example.com")
        payment = await pay(settings, ana)
        return {
            "plan": plan,
            "ana": ana,
            "payment": payment,
            "number": payment["number"],
            "agent": await make_staff("agent"),
        }

    return run(seed())


def with_logins(settings, office: dict[str, Any]) -> dict[str, Any]:
    """Give Ana a password and add Bruno, a customer with a password and no invoice."""

    async def seed() -> dict[str, Any]:
        bruno = await subscriber(settings, office["plan"], name="Bruno Lima")
        return {
            **office,
            "bruno": bruno,
            "ana_password": await customer_password(office["ana"]["id"]),
            "bruno_password": await customer_password(bruno["id"]),
        }

    return run(seed())
