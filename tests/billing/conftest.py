"""Builders for billing tests: an office day chosen by the test, plans, customers with
connections registered on given dates, and payments taken by a given person."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from appliance import clock
from appliance.jobs.queue import configure_queue
from tests.helpers import SYSTEM, make_customer, make_plan

_keys = itertools.count(1)


def set_today(settings, day: str | dt.date, hour: int = 12) -> dt.date:
    """Move the clock so that the office's day is ``day`` (at ``hour`` local time)."""
    if isinstance(day, str):
        day = dt.date.fromisoformat(day)
    clock.reset()
    target = dt.datetime.combine(day, dt.time(hour), tzinfo=settings.tz)
    clock.shift(target - clock.now())
    return day


class Person:
    """Someone recording a payment, as the web layer's identity would describe them."""

    def __init__(self, role: str, *, id: Any = None, customer_id: Any = None, name: str = ""):
        self.role = role
        self.id = id
        self.customer_id = customer_id
        self.display_name = name or role


ADMIN = SYSTEM
AGENT = Person("agent", name="Field Agent")


def customer_actor(customer: dict[str, Any]) -> Person:
    return Person("customer", customer_id=customer["id"], name=customer["name"])


@pytest.fixture
def plans(settings):
    from tests.conftest import run

    return {
        "cable": run(make_plan(service="cable", name="Cable 100", monthly_price="100.00")),
        "broadband": run(make_plan(service="broadband", name="Fibre 80", monthly_price="80.00")),
    }


@pytest.fixture
def queued(settings):
    """A job queue nobody consumes (the worker is off): e-mail and PDF tasks just wait."""
    configure_queue(settings)
    yield settings
    configure_queue(settings, immediate=True)


async def subscriber(
    settings,
    plans: dict[str, Any],
    *,
    cable: str | None = None,
    broadband: str | None = None,
    cable_paid_until: str = "",
    broadband_paid_until: str = "",
    **overrides: Any,
) -> dict[str, Any]:
    """A customer with a cable and/or broadband connection registered on the given dates."""
    data: dict[str, Any] = dict(overrides)
    for service, registered, paid in (
        ("cable", cable, cable_paid_until),
        ("broadband", broadband, broadband_paid_until),
    ):
        if registered:
            data[f"{service}_plan"] = str(plans[service]["id"])
            data[f"{service}_registered_on"] = registered
            data[f"{service}_expires_on"] = paid
    return await make_customer(settings, **data)


def key() -> str:
    return f"test-key-{next(_keys):06d}"


async def pay(
    settings,
    customer: dict[str, Any],
    amount: str,
    *,
    actor: Any = ADMIN,
    mode: str = "cash",
    reference: str = "",
    service: str = "all",
    idempotency_key: str | None = None,
):
    from appliance.billing import service as billing

    return await billing.record_payment(
        customer["id"],
        {"amount": amount, "mode": mode, "reference": reference, "service": service},
        actor=actor,
        settings=settings,
        idempotency_key=idempotency_key,
    )
