"""An office whose October 2026 covers every case a payment report meets."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pytest

from appliance import clock
from tests.conftest import run
from tests.helpers import make_plan
from tests.reports.ledger import charge, customer_with, pay, reverse

OCT = dt.date(2026, 10, 1)


@dataclass
class Office:
    """Who is in which report for October 2026 (CRFs), and the amounts that matter."""

    crf: dict[str, str] = field(default_factory=dict)
    numbers: dict[str, str] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)


async def build_office(settings) -> Office:
    cable = await make_plan(service="cable", name="Básico", monthly_price="49.90")
    fiber = await make_plan(service="broadband", name="Fibra 100", monthly_price="89.90")
    plans = {"cable": cable, "broadband": fiber}
    office = Office()

    async def customer(key, services, **fields):
        row = await customer_with(settings, services=services, plans=plans, **fields)
        office.crf[key] = row["crf"]
        office.customers[key] = row
        return row

    # Ana: October cable paid in full; October broadband partly paid, September's not at all.
    ana = await customer(
        "ana",
        ("cable", "broadband"),
        name="Ana Souza",
        email="ana@example.com",
        registered=dt.date(2026, 9, 1),
    )
    sep_bb = await charge(ana, "broadband", 2026, 9, 8990)
    await charge(ana, "cable", 2026, 9, 4990, opening=True)
    oct_cable = await charge(ana, "cable", 2026, 10, 4990)
    oct_bb = await charge(ana, "broadband", 2026, 10, 8990)
    p = await pay(ana, [(oct_cable, 4990)], paid_on=dt.date(2026, 10, 5))
    office.numbers["ana_cable"] = p["number"]
    p = await pay(ana, [(oct_bb, 4000)], paid_on=dt.date(2026, 10, 10), mode="online")
    office.numbers["ana_bb"] = p["number"]
    assert sep_bb

    # Bruno: October cable paid in two instalments.
    bruno = await customer("bruno", ("cable",), name="Bruno Lima")
    oct_b = await charge(bruno, "cable", 2026, 10, 4990)
    p1 = await pay(bruno, [(oct_b, 2000)], paid_on=dt.date(2026, 10, 3))
    p2 = await pay(bruno, [(oct_b, 2990)], paid_on=dt.date(2026, 10, 20), mode="online")
    office.numbers["bruno_1"], office.numbers["bruno_2"] = p1["number"], p2["number"]

    # Carla: October broadband paid, then the payment reversed: unpaid, no invoice shown.
    carla = await customer("carla", ("broadband",), name="Carla Dias")
    oct_c = await charge(carla, "broadband", 2026, 10, 8990)
    reversed_payment = await pay(carla, [(oct_c, 8990)], paid_on=dt.date(2026, 10, 7))
    await reverse(reversed_payment)
    office.numbers["carla_reversed"] = reversed_payment["number"]

    # Davi: suspended, October waived: in no report.
    davi = await customer("davi", ("cable",), name="Davi Rocha")
    await charge(davi, "cable", 2026, 10, 0, state="waived")

    # Elisa: October cable paid before billing began on the box (no payment row).
    elisa = await customer("elisa", ("cable",), name="Elisa Nunes")
    await charge(elisa, "cable", 2026, 10, 4990, opening=True)

    # Gil: October broadband paid in full; November not (another month).
    gil = await customer("gil", ("broadband",), name="Gil Prado")
    oct_g = await charge(gil, "broadband", 2026, 10, 8990)
    p = await pay(gil, [(oct_g, 8990)], paid_on=dt.date(2026, 10, 30))
    office.numbers["gil"] = p["number"]
    await charge(gil, "broadband", 2026, 11, 8990)

    # Hugo: October cable partly paid (R$ 10,00 of 49,90).
    hugo = await customer("hugo", ("cable",), name="Hugo Reis")
    oct_h = await charge(hugo, "cable", 2026, 10, 4990)
    await pay(hugo, [(oct_h, 1000)], paid_on=dt.date(2026, 10, 12))
    return office


TODAY = dt.date(2026, 11, 16)


def move_clock_to(day: dt.date) -> None:
    """Make ``day`` the office's today (the ``settings`` fixture puts the clock back)."""
    clock.shift(dt.datetime.combine(day, dt.time(15)).replace(tzinfo=dt.UTC) - clock.now())


@pytest.fixture
def office(settings) -> Office:
    move_clock_to(TODAY)
    return run(build_office(settings))
