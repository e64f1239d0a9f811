"""A box's round killed with SIGKILL in the middle of a push and of a pull (``ctvms sync once``
as a process of its own) resumes at most one batch back and ends identical to central; a large
backlog goes in several bounded batches and arrives exactly once."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
import uuid

from appliance.db import write_transaction
from appliance.sync.state import get_state, update_state
from appliance.sync.tables import SyncBox, SyncChange
from bench.server import ctvms_command, server_env
from tests.billing.conftest import pay, subscriber
from tests.helpers import make_plan
from tests.sync.conftest import new_code
from tests.sync.helpers import assert_converged, edit_customer, payments, unique_mobile
from tests.sync.proxy import FaultProxy, fresh_client

BATCH = 40


def _start_round(box) -> subprocess.Popen:
    return subprocess.Popen(
        [*ctvms_command(), "sync", "once", "--batch", str(BATCH)],
        env=server_env(box.settings.data_dir, box.env()),
        cwd=box.settings.data_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def _central_box(central, node_id) -> dict:
    await central.use()
    return (await SyncBox.select().where(SyncBox.node_id == node_id))[0]


async def _kill_when(process: subprocess.Popen, condition, *, within: float = 60.0) -> bool:
    """SIGKILL ``process`` once ``condition()`` holds (plus a random moment); False when it
    finished first."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if await condition():
            await asyncio.sleep(random.uniform(0, 0.05))
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            return True
        await asyncio.sleep(0.02)
    process.kill()
    raise AssertionError("the round never reached the moment to kill it")


async def _edits(customer_id, count: int) -> None:
    async with write_transaction():
        for _ in range(count):
            await edit_customer(customer_id, mobile=unique_mobile())


async def _office(make_box, central):
    box = await make_box(central, new_code())
    await box.use()
    plan = await make_plan(service="cable", monthly_price="100.00")
    customer = await subscriber(box.settings, {"cable": plan}, cable="2026-01-01")
    await pay(box.settings, customer, "250.00")
    return box, customer


async def test_a_box_killed_mid_push_and_mid_pull_resumes_and_ends_identical(
    shared_central, make_box
):
    box, customer = await _office(make_box, shared_central)
    await _edits(customer["id"], 10 * BATCH)
    await pay(box.settings, customer, "250.00")
    state = await get_state()
    node, total = state["node_id"], state["last_seq"]
    kills = 0
    # Mid-push: killed once central has some but not all of the batches.
    for _ in range(2):
        start = (await _central_box(shared_central, node))["last_seq"]

        async def pushing(start=start) -> bool:
            seq = (await _central_box(shared_central, node))["last_seq"]
            return start < seq < total

        if await _kill_when(_start_round(box), pushing):
            kills += 1
            at_central = (await _central_box(shared_central, node))["last_seq"]
            await box.use()
            rows = await SyncChange.raw(
                "SELECT coalesce(max(seq), 0) AS s FROM sync_changes WHERE node_id = {} "
                "AND sent = {}",
                node,
                True,
            )
            # The box lost at most the answer of the batch in flight.
            assert at_central - BATCH <= int(rows[0]["s"]) <= at_central
    assert kills, "no round was killed mid-push"
    # Mid-pull: central has many edits of the office's customer for the box to fetch.
    finished = subprocess.run(
        _start_round(box).args, env=server_env(box.settings.data_dir, box.env()), check=False
    )
    assert finished.returncode == 0
    await shared_central.use()
    await _edits(customer["id"], 8 * BATCH)
    before = (await _central_box(shared_central, node))["cursor"]

    async def pulling() -> bool:
        return (await _central_box(shared_central, node))["cursor"] > before

    assert await _kill_when(_start_round(box), pulling), "the pull finished before the kill"
    served = (await _central_box(shared_central, node))["cursor"]
    await box.use()
    cursor = (await get_state())["cursor"]
    await shared_central.use()
    between = await SyncChange.raw(
        "SELECT count(*) AS n FROM sync_changes WHERE feed_seq > {} AND feed_seq <= {}",
        cursor,
        served,
    )
    assert cursor <= served and int(between[0]["n"]) <= BATCH
    done = subprocess.run(
        _start_round(box).args, env=server_env(box.settings.data_dir, box.env()), check=False
    )
    assert done.returncode == 0
    await box.sync()
    await assert_converged(shared_central, box)
    office = box.settings.office_code
    assert len(await payments(shared_central, office)) == 2
    assert await payments(shared_central, office) == await payments(box, office)


async def test_a_backlog_of_thousands_goes_in_bounded_batches_exactly_once(
    shared_central, make_box
):
    box, customer = await _office(make_box, shared_central)
    await _edits(customer["id"], 3000)
    state = await get_state()
    proxy = await FaultProxy(upstream_port=shared_central.server.port).start()
    try:
        await update_state(central_url=proxy.url)
        async with fresh_client(timeout=60) as http:
            summary = await box.sync(http=http, batch=250)
    finally:
        await proxy.close()
    assert proxy.count("/sync/push") >= state["last_seq"] // 250
    assert summary["pushed"] == state["last_seq"]
    await shared_central.use()
    rows = await SyncChange.raw(
        "SELECT count(*) AS n, count(DISTINCT seq) AS s, max(seq) AS top FROM sync_changes "
        "WHERE node_id = {}",
        uuid.UUID(str(state["node_id"])),
    )
    assert rows[0]["n"] == rows[0]["s"] == rows[0]["top"] == state["last_seq"]
    await box.use()
    await update_state(central_url=shared_central.url)
    await box.sync()
    await assert_converged(shared_central, box)
