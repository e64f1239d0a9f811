"""The dashboard's figures are kept in memory, and never shown older than they may be: a
change through this process or, on a box, by anyone shows at once; otherwise the figures are
computed again after the time-to-live."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3

import pytest

from appliance import clock, i18n
from appliance.complaints import service as complaints
from appliance.dashboard import cache
from appliance.dashboard import service as dashboard
from tests.billing.conftest import customer_actor, pay, set_today, subscriber
from tests.conftest import USE_PG
from tests.dashboard.conftest import TODAY


def received(figures, service: str = "cable") -> int:
    return figures["money"]["received"].get(service, 0)


async def test_the_figures_come_from_memory_until_a_payment_is_recorded(settings, plans):
    customer = await subscriber(settings, plans, cable="2026-10-01")
    first = await dashboard.admin_dashboard(settings)
    again = await dashboard.admin_dashboard(settings)
    assert again["charts"] is first["charts"]  # the kept figures, not computed again
    await pay(settings, customer, "200.00")  # October's and November's
    after = await dashboard.admin_dashboard(settings)
    assert received(after) == received(first) + 20000
    assert after["charts"] is not first["charts"]


async def test_a_complaint_raised_and_read_through_the_service_shows_at_once(settings, plans):
    customer = await subscriber(settings, plans, cable="2026-10-01")
    assert (await dashboard.admin_dashboard(settings))["unread_complaints"] == 0
    complaint = await complaints.raise_complaint(
        customer["id"],
        category="no_signal",
        message="No picture since this morning.",
        actor=customer_actor(customer),
        settings=settings,
    )
    assert (await dashboard.admin_dashboard(settings))["unread_complaints"] == 1
    await complaints.mark_read(complaint["id"], actor=None)
    assert (await dashboard.admin_dashboard(settings))["unread_complaints"] == 0


@pytest.mark.skipif(USE_PG, reason="the data version is SQLite's")
async def test_a_write_by_another_process_shows_at_once_on_a_box(settings, plans):
    await subscriber(settings, plans, cable="2026-10-01")
    before = await dashboard.admin_dashboard(settings)
    assert before["connections"]["cable"]["suspended"] == 0
    # What the worker's status updater does, from its own process: no invalidate() here.
    conn = sqlite3.connect(settings.sqlite_path)
    with conn:
        conn.execute("UPDATE connections SET status = 'suspended' WHERE service = 'cable'")
    conn.close()
    after = await dashboard.admin_dashboard(settings)
    assert after["connections"]["cable"]["suspended"] == 1


async def test_kept_figures_are_computed_again_after_the_time_to_live(settings):
    computed: list[int] = []

    async def compute() -> int:
        computed.append(1)
        return len(computed)

    assert await cache.figures(settings, ("ttl",), compute) == 1
    clock.shift(dt.timedelta(seconds=cache.TTL_SECONDS - 1))
    assert await cache.figures(settings, ("ttl",), compute) == 1
    clock.shift(dt.timedelta(seconds=1))
    assert await cache.figures(settings, ("ttl",), compute) == 2
    # A clock set back (a box without a battery-backed clock) does not keep them either.
    clock.shift(-dt.timedelta(minutes=10))
    assert await cache.figures(settings, ("ttl",), compute) == 3


async def test_invalidate_drops_every_kept_figure(settings):
    computed: list[str] = []

    async def compute(name: str) -> str:
        computed.append(name)
        return name

    await cache.figures(settings, ("a",), lambda: compute("a"))
    await cache.figures(settings, ("b",), lambda: compute("b"))
    await cache.figures(settings, ("a",), lambda: compute("a"))
    assert computed == ["a", "b"]
    cache.invalidate()
    await cache.figures(settings, ("a",), lambda: compute("a"))
    await cache.figures(settings, ("b",), lambda: compute("b"))
    assert computed == ["a", "b", "a", "b"]


async def test_requests_arriving_together_wait_for_one_computation(settings):
    release = asyncio.Event()
    computed: list[int] = []

    async def compute() -> str:
        computed.append(1)
        await release.wait()
        return "figures"

    waiting = [asyncio.create_task(cache.figures(settings, ("once",), compute)) for _ in range(5)]
    while not computed:
        await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiting) == ["figures"] * 5
    assert computed == [1]


async def test_a_failed_computation_is_not_kept(settings):
    async def broken() -> str:
        raise RuntimeError("database gone")

    async def working() -> str:
        return "figures"

    with pytest.raises(RuntimeError):
        await cache.figures(settings, ("fails",), broken)
    assert await cache.figures(settings, ("fails",), working) == "figures"


async def test_each_language_keeps_its_own_charts(settings, plans):
    await subscriber(settings, plans, cable="2026-10-01")
    with i18n.use_locale("en"):
        english = await dashboard.admin_dashboard(settings)
    with i18n.use_locale("pt_BR"):
        portuguese = await dashboard.admin_dashboard(settings)
    assert english["charts"]["statuses"]["title"] == "Connections by status"
    assert portuguese["charts"]["statuses"]["title"] != english["charts"]["statuses"]["title"]


async def test_figures_kept_before_midnight_are_not_shown_after_it(settings, plans):
    await subscriber(settings, plans, cable="2026-10-01")
    set_today(settings, TODAY, hour=23)
    clock.shift(dt.timedelta(minutes=59, seconds=59))  # 23:59:59 at the office
    before = await dashboard.admin_dashboard(settings)
    clock.shift(dt.timedelta(seconds=2))  # well within the time-to-live
    after = await dashboard.admin_dashboard(settings)
    assert after["today"] == before["today"] + dt.timedelta(days=1)
