"""Billing ledger rows for report tests: charges with exact amounts and payments allocated to
them, written to the billing tables as the billing service leaves them (a charge's ``paid`` is
the sum of its allocations from payments that were not reversed)."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from appliance.billing.tables import Allocation, Charge, Payment, PaymentReversal
from appliance.customers.tables import Connection
from appliance.plans.tables import Plan
from tests.helpers import make_customer, make_plan

_numbers = itertools.count(1)


async def customer_with(
    settings,
    *,
    services=("cable",),
    plans: dict[str, dict[str, Any]] | None = None,
    registered: dt.date = dt.date(2026, 10, 1),
    **fields: Any,
) -> dict[str, Any]:
    """A customer with one connection per service, registered on ``registered``."""
    data: dict[str, Any] = dict(fields)
    for service in services:
        plan = (plans or {}).get(service) or await make_plan(service=service)
        data[f"{service}_plan"] = str(plan["id"])
        data[f"{service}_registered_on"] = registered.isoformat()
    return await make_customer(settings, **data)


async def connection_of(customer: dict[str, Any], service: str) -> dict[str, Any]:
    rows = await Connection.select().where(
        (Connection.customer == customer["id"]) & (Connection.service == service)
    )
    return rows[0]


async def charge(
    customer: dict[str, Any],
    service: str,
    year: int,
    month: int,
    amount: int,
    *,
    state: str = "billed",
    opening: bool = False,
) -> Any:
    """The month's charge of the customer's connection, created or set to these values."""
    conn = await connection_of(customer, service)
    plan = (await Plan.select().where(Plan.id == conn["plan"]))[0]
    values = {
        Charge.state: state,
        Charge.amount: amount,
        Charge.paid: amount if opening else 0,
        Charge.opening: opening,
        Charge.plan_name: plan["name"],
        Charge.billed_at: dt.datetime(year, month, 1, 3, tzinfo=dt.UTC),
    }
    existing = await Charge.select(Charge.id).where(
        (Charge.connection == conn["id"]) & (Charge.year == year) & (Charge.month == month)
    )
    if existing:
        await Charge.update(values).where(Charge.id == existing[0]["id"])
        return existing[0]["id"]
    row = Charge(
        customer=customer["id"],
        connection=conn["id"],
        service=service,
        year=year,
        month=month,
        plan=plan["id"],
        **{column._meta.name: value for column, value in values.items()},
    )
    await row.save()
    return row.id


async def pay(
    customer: dict[str, Any],
    allocations: list[tuple[Any, int]],
    *,
    paid_on: dt.date,
    mode: str = "cash",
    number: str | None = None,
) -> dict[str, Any]:
    """A payment settling ``(charge id, amount)`` pairs; the charges' ``paid`` grow."""
    total = sum(amount for _charge, amount in allocations)
    number = number or f"TS-{paid_on.year}-{next(_numbers):06d}"
    payment = Payment(
        number=number,
        office_code="TS",
        customer=customer["id"],
        amount=total,
        mode=mode,
        paid_on=paid_on,
        snapshot={},
    )
    await payment.save()
    for charge_id, amount in allocations:
        await Allocation(payment=payment.id, charge=charge_id, amount=amount).save()
        await Charge.update({Charge.paid: Charge.paid + amount}).where(Charge.id == charge_id)
    return {"id": payment.id, "number": number, "amount": total}


async def reverse(payment: dict[str, Any]) -> None:
    """Undo a payment as the billing service does: its months are open again."""
    await PaymentReversal(payment=payment["id"], reason="test").save()
    for alloc in await Allocation.select().where(Allocation.payment == payment["id"]):
        await Charge.update({Charge.paid: Charge.paid - alloc["amount"]}).where(
            Charge.id == alloc["charge"]
        )
