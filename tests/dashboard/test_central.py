"""At central (PostgreSQL, no data version) each office's figures are kept apart; the services'
writes show at once, other writes (a box's sync push) after the time-to-live."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator

import pytest

from appliance import clock, db
from appliance.customers import service as customers
from appliance.customers.tables import Customer
from appliance.dashboard import cache
from appliance.dashboard import service as dashboard
from appliance.jobs.queue import configure_queue
from appliance.settings import Settings
from appliance.sync import central
from tests.billing.conftest import set_today, subscriber
from tests.conftest import _pg_admin, make_settings, pg_url_for, run
from tests.dashboard.conftest import TODAY
from tests.helpers import SYSTEM, make_plan

pytestmark = pytest.mark.postgres
OFFICES = ("", "NO", "SU")  # every office, then each one


@pytest.fixture
def owner_office(tmp_path, pg_template) -> Iterator[tuple[Settings, dict]]:
    """Central with offices NO (two cable customers) and SU (one)."""
    name = f"ctvms_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    settings = make_settings(
        tmp_path, database_url=pg_url_for(name), role="central", office_code="HQ"
    )
    db.configure(settings)
    configure_queue(settings, immediate=True)
    set_today(settings, TODAY)
    try:
        yield settings, run(_offices(settings))
    finally:
        clock.reset()
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _offices(settings: Settings) -> dict:
    plans = {"cable": await make_plan(service="cable", monthly_price="100.00")}
    people = {}
    for code, names in (("NO", ("North One", "North Two")), ("SU", ("South One",))):
        await central.create_office(code, f"Office {code}")
        for person in names:
            row = await subscriber(settings, plans, cable="2026-10-01", name=person)
            await Customer.raw("UPDATE customers SET office = {} WHERE id = {}", code, row["id"])
            people[person] = row
    return people


def connected(figures) -> int:
    """Cable connections counted, whatever their status (archived customers are not)."""
    return sum(figures["connections"]["cable"].values())


async def every_view(settings: Settings) -> dict[str, dict]:
    return {code: await dashboard.admin_dashboard(settings, office=code) for code in OFFICES}


async def test_each_office_has_its_own_figures_and_a_service_write_shows_at_once(owner_office):
    settings, people = owner_office
    shown = await every_view(settings)
    assert {code: connected(f) for code, f in shown.items()} == {"": 3, "NO": 2, "SU": 1}
    again = await dashboard.admin_dashboard(settings, office="NO")
    assert again["charts"] is shown["NO"]["charts"]  # kept

    await customers.archive_customer(people["North One"]["id"], actor=SYSTEM)
    after = await every_view(settings)
    assert {code: connected(f) for code, f in after.items()} == {"": 2, "NO": 1, "SU": 1}


async def test_a_write_outside_this_process_shows_within_the_time_to_live(owner_office):
    settings, people = owner_office
    assert connected(await dashboard.admin_dashboard(settings, office="SU")) == 1
    # As a box's sync push applies an archiving at central: straight into the table.
    await Customer.raw(
        "UPDATE customers SET archived_at = {} WHERE id = {}",
        clock.now(),
        people["South One"]["id"],
    )
    clock.shift(dt.timedelta(seconds=cache.TTL_SECONDS))
    assert connected(await dashboard.admin_dashboard(settings, office="SU")) == 0
