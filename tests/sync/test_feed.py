"""Central's feed never lets a reader skip a change that commits late: a pull while another
transaction holds an uncommitted edit stops before it, and the next pull brings it."""

from __future__ import annotations

import asyncio

import asyncpg

from appliance.customers.tables import Customer
from appliance.sync.state import get_state
from tests.billing.conftest import subscriber
from tests.conftest import pg_url_for
from tests.helpers import make_plan
from tests.sync.conftest import new_code


async def _mobile(box, customer_id) -> str:
    await box.use()
    rows = await Customer.select(Customer.mobile).where(Customer.id == customer_id)
    return rows[0]["mobile"]


async def test_a_late_commit_is_not_skipped(shared_central, make_box):
    box = await make_box(shared_central, new_code())
    await box.use()
    plan = await make_plan(service="cable", monthly_price="100.00")
    first = await subscriber(box.settings, {"cable": plan}, cable="2026-01-01")
    second = await subscriber(box.settings, {"cable": plan}, cable="2026-01-01")
    await box.sync()
    url = pg_url_for(shared_central.db_name)
    slow, quick = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        # A central edit that takes its feed number and then waits before committing.
        slow_tx = slow.transaction()
        await slow_tx.start()
        await slow.execute(
            "UPDATE customers SET mobile = '5521900000001' WHERE id = $1", first["id"]
        )
        # A second edit starts after it: it waits for the first's feed number to commit.
        later = asyncio.ensure_future(
            quick.execute(
                "UPDATE customers SET mobile = '5521900000002' WHERE id = $1", second["id"]
            )
        )
        await box.sync()
        await box.use()
        cursor = (await get_state())["cursor"]
        assert await _mobile(box, first["id"]) != "5521900000001"
        assert not later.done(), "a feed number was taken past an uncommitted one"
        await slow_tx.commit()
        await asyncio.wait_for(later, 30)
    finally:
        await slow.close()
        await quick.close()
    await box.sync()
    await box.use()
    assert (await get_state())["cursor"] > cursor
    assert await _mobile(box, first["id"]) == "5521900000001"
    assert await _mobile(box, second["id"]) == "5521900000002"
