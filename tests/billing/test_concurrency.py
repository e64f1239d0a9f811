"""Two payments for one customer at the same moment (two agents at the door, or one agent's
double tap without a key): together they can never take more than the due. Runs on SQLite and,
when it answers, on PostgreSQL, where the billing lock is an advisory lock."""

from __future__ import annotations

import asyncio

import pytest

from appliance.billing import service as billing
from appliance.billing.tables import Payment
from appliance.errors import ValidationFailed
from tests.billing.conftest import ADMIN, AGENT, pay, set_today, subscriber
from tests.helpers import make_plan


@pytest.fixture(params=["sqlite", "postgres"])
def any_settings(request):
    name = "settings" if request.param == "sqlite" else "pg_settings"
    return request.getfixturevalue(name)


async def test_two_simultaneous_payments_never_exceed_the_due(any_settings):
    settings = any_settings
    set_today(settings, "2026-03-15")
    plan = await make_plan(service="cable", name="Cable 100", monthly_price="100.00")
    customer = await subscriber(settings, {"cable": plan}, cable="2026-01-01")  # 300.00 due
    results = await asyncio.gather(
        pay(settings, customer, "300", actor=AGENT),
        pay(settings, customer, "300", actor=ADMIN),
        return_exceptions=True,
    )
    taken = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, ValidationFailed)]
    assert len(taken) == 1 and len(refused) == 1, results
    assert "Nothing is due" in refused[0].errors["amount"]
    assert await Payment.count() == 1
    account = await billing.account(customer["id"])
    assert account["due"] == 0 and account["credit"] == 0


async def test_simultaneous_partial_payments_are_taken_one_after_the_other(any_settings):
    settings = any_settings
    set_today(settings, "2026-03-15")
    plan = await make_plan(service="cable", name="Cable 100", monthly_price="100.00")
    customer = await subscriber(settings, {"cable": plan}, cable="2025-11-01")  # 500.00 due
    results = await asyncio.gather(
        *[pay(settings, customer, "250", actor=AGENT) for _ in range(3)], return_exceptions=True
    )
    taken = [r for r in results if isinstance(r, dict)]
    assert len(taken) == 2, results
    # The second one saw the first: its invoice says nothing is left, and numbers do not clash.
    assert sorted(r["remaining_due"] for r in taken) == [0, 25000]
    assert len({r["number"] for r in taken}) == 2
    assert (await billing.account(customer["id"]))["due"] == 0
