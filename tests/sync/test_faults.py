"""Faults between a box and central, injected by a TCP proxy (tests/sync/proxy.py) or by posting
batches directly with the box's credentials: after each, a normal round converges, with every
payment exactly once and nothing lost."""

from __future__ import annotations

import pytest

from appliance.sync import client
from appliance.sync.state import get_state, update_state
from appliance.sync.tables import SyncBox, SyncChange
from tests.billing.conftest import pay, subscriber
from tests.helpers import make_plan
from tests.sync.conftest import box_headers, new_code, post
from tests.sync.helpers import assert_converged, edit_customer, payments, unique_mobile
from tests.sync.proxy import FaultProxy, fresh_client


@pytest.fixture
async def proxy(shared_central):
    async def kill() -> None:
        import asyncio

        await asyncio.to_thread(shared_central.kill)

    p = await FaultProxy(upstream_port=shared_central.server.port, on_kill=kill).start()
    yield p
    await p.close()


async def _office(make_box, central, proxy, *, payments_count: int = 3):
    """A box behind the proxy with a customer, a plan and a few payments waiting to go."""
    box = await make_box(central, new_code())
    await box.use()
    plan = await make_plan(service="cable", monthly_price="100.00")
    customer = await subscriber(box.settings, {"cable": plan}, cable="2026-01-01")
    for _ in range(payments_count):
        await pay(box.settings, customer, "250.00")
    await update_state(central_url=proxy.url)
    return box, customer


async def _round(box, **kwargs):
    async with fresh_client(timeout=kwargs.pop("timeout", 10.0)) as http:
        return await box.sync(http=http, **kwargs)


async def _failing_round(box) -> str:
    with pytest.raises(client.SyncError) as failed:
        await _round(box, timeout=2.0)
    return str(failed.value)


async def _converges(central, box, expected_payments: int) -> None:
    await _round(box)
    await _round(box)  # the second round picks up central's recomputed balances
    states = await assert_converged(central, box)
    office = box.settings.office_code
    at_central = await payments(central, office)
    assert len(at_central) == expected_payments
    assert len({number for _, number, _ in at_central}) == expected_payments
    assert at_central == await payments(box, office)
    assert states[office]["billing_payments"]


@pytest.mark.parametrize("mode", ["drop_request", "cut_request"])
async def test_a_push_that_never_arrives_whole_is_sent_again(shared_central, make_box, proxy, mode):
    box, _customer = await _office(make_box, shared_central, proxy)
    proxy.fault("/sync/push", mode)
    assert "unreachable" in await _failing_round(box)
    await shared_central.use()
    assert await SyncBox.count().where(SyncBox.office_code == box.settings.office_code) == 1
    assert await payments(shared_central, box.settings.office_code) == []
    await box.use()
    assert (await client.status())["pending"] > 0
    await _converges(shared_central, box, 3)


@pytest.mark.parametrize("mode", ["drop_response", "cut_response", "stall"])
async def test_a_lost_answer_means_a_resend_that_central_recognises(
    shared_central, make_box, proxy, mode
):
    box, _customer = await _office(make_box, shared_central, proxy)
    await box.use()
    pending = (await client.status())["pending"]
    proxy.fault("/sync/push", mode)
    await _failing_round(box)
    assert proxy.events[-1].status == 200, "central answered the push the box never heard"
    # Central has the batch; the box still thinks all of it is unsent.
    assert len(await payments(shared_central, box.settings.office_code)) == 3
    await box.use()
    assert (await client.status())["pending"] == pending
    async with fresh_client() as http:
        state = await get_state()
        result = client.RoundResult()
        await client.push(http, result)
    assert result.pushed == 0, "the resend applied something twice"
    await _converges(shared_central, box, 3)
    await shared_central.use()
    rows = await SyncChange.raw(
        "SELECT count(*) AS n, count(DISTINCT id) AS d FROM sync_changes WHERE node_id = {}",
        state["node_id"],
    )
    assert rows[0]["n"] == rows[0]["d"] == state["last_seq"]


async def test_a_lost_pull_answer_is_fetched_again(shared_central, make_box, proxy):
    box, customer = await _office(make_box, shared_central, proxy, payments_count=1)
    await _round(box)
    # Central edits the customer; the box's pull answer carrying it is lost.
    await shared_central.use()
    mobile = unique_mobile()
    await edit_customer(customer["id"], mobile=mobile)
    proxy.fault("/sync/pull", "drop_response")
    await _failing_round(box)
    await box.use()
    before = await get_state()
    await _round(box)
    after = await get_state()
    assert after["cursor"] > before["cursor"]
    rows = await SyncChange.raw("SELECT mobile FROM customers WHERE id = {}", customer["id"])
    assert rows[0]["mobile"] == mobile
    await _converges(shared_central, box, 1)


async def test_central_killed_in_the_middle_of_a_batch(shared_central, make_box, proxy):
    box, customer = await _office(make_box, shared_central, proxy, payments_count=2)
    await box.use()
    # A batch big enough that central is still applying it when it dies.
    for _ in range(40):
        await edit_customer(customer["id"], mobile=unique_mobile())
    proxy.fault("/sync/push", "kill")
    try:
        await _failing_round(box)
    finally:
        shared_central.restart()
    proxy.upstream_port = shared_central.server.port
    await _converges(shared_central, box, 2)


async def test_duplicated_and_reordered_batches_are_ignored_by_change_id(
    shared_central, make_box, proxy
):
    box, customer = await _office(make_box, shared_central, proxy, payments_count=2)
    await box.use()
    state = await get_state()
    first = await client._pending_batch(state, 1000)
    await _round(box)
    await box.use()
    await pay(box.settings, customer, "250.00")
    second = await client._pending_batch(state, 1000)
    await _round(box)
    headers = box_headers(str(state["node_id"]), state["box_secret"])
    url = shared_central.url
    body = {"schema_version": 1, "now_ms": 0}
    # The newer batch again, then the older one, then both mixed in one batch.
    for changes in (second, first, second + first):
        answer = post(url, "push", {**body, "changes": changes}, headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["applied"] == 0
        assert answer.json()["duplicates"] == len(changes)
    await _converges(shared_central, box, 3)
