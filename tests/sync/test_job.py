"""The ``sync`` scheduled job on a box, against a real central (``ctvms serve`` on PostgreSQL):
it pushes payments, survives central being down (a warning and back-off, not a crash) and
resumes once central is back; a payment asks the worker for a round right away."""

from __future__ import annotations

import datetime as dt

from appliance import clock
from appliance.billing.tables import Payment
from appliance.jobs import registry
from appliance.jobs.queue import configure_queue, huey
from appliance.jobs.runner import run_job
from appliance.jobs.tables import JobRun
from appliance.sync.state import get_state
from tests.billing.conftest import pay, subscriber
from tests.helpers import make_plan


async def _paid(settings, name: str = "Ana Souza") -> str:
    plans = {"cable": await make_plan(service="cable", monthly_price="100.00")}
    customer = await subscriber(settings, plans, cable="2026-12-01", name=name)
    return (await pay(settings, customer, "100.00"))["number"]


async def _at_central(central, number: str) -> bool:
    await central.use()
    return await Payment.exists().where(Payment.number == number)


async def test_the_job_pushes_a_payment_to_central(central, make_box):
    box = await make_box(central, "AA")
    number = await _paid(box.settings)
    assert not await _at_central(central, number)

    await box.use()
    outcome = await run_job(box.settings, registry.SYNC, trigger="schedule")
    assert outcome.status == "ok", outcome.error
    assert outcome.result["pushed"] > 0 and "warning" not in outcome.result
    assert await _at_central(central, number)
    await box.use()
    runs = await JobRun.select().where(JobRun.job == registry.SYNC)
    assert len(runs) == 1 and runs[0]["status"] == "ok"
    state = await get_state()
    assert state["failures"] == 0 and state["last_success"] is not None


async def test_central_down_is_a_warning_with_back_off_and_the_run_after_it_succeeds(
    central, make_box
):
    box = await make_box(central, "AA")
    number = await _paid(box.settings)
    central.kill()

    await box.use()
    failed = await run_job(box.settings, registry.SYNC, trigger="schedule")
    assert failed.status == "ok", "an unreachable central must not fail the job"
    assert "unreachable" in failed.result["warning"]
    assert failed.result["failures"] == 1
    state = await get_state()
    assert state["failures"] == 1 and "unreachable" in state["last_error"]
    retry_after = dt.datetime.fromisoformat(failed.result["retry_after"])
    assert retry_after > clock.now()
    recorded = await JobRun.select().where(JobRun.id == failed.run_id)
    assert recorded and "unreachable" in str(recorded[0]["result"])

    # Within the back-off the next run does not even try (central would still be down).
    attempted = state["last_attempt"]
    waiting = await run_job(box.settings, registry.SYNC, trigger="schedule")
    assert waiting.status == "ok" and waiting.result["skipped"] == "backing off"
    assert (await get_state())["last_attempt"] == attempted

    central.restart()
    clock.shift(retry_after - clock.now() + dt.timedelta(seconds=1))
    try:
        await box.use()
        resumed = await run_job(box.settings, registry.SYNC, trigger="schedule")
    finally:
        clock.reset()
    assert resumed.status == "ok" and resumed.result["pushed"] > 0, resumed.result
    state = await get_state()
    assert state["failures"] == 0 and state["last_error"] == ""
    assert await _at_central(central, number)


async def test_a_box_not_enrolled_does_nothing_and_says_so(central, make_box):
    box = await make_box(central, "AA", enroll=False)
    await _paid(box.settings)
    await box.use()
    outcome = await run_job(box.settings, registry.SYNC, trigger="cli")
    assert outcome.status == "ok"
    assert "not enrolled" in outcome.result["skipped"]
    assert (await get_state())["last_attempt"] is None


def _queued_syncs() -> list:
    return [t for t in huey.pending() if t.name == "sync_now"]


async def test_a_payment_on_an_enrolled_box_queues_a_round_that_pushes_it(central, make_box):
    lone = await make_box(central, "BB", enroll=False)
    box = await make_box(central, "AA")
    try:
        await lone.use()
        configure_queue(lone.settings)  # a real queue in the data folder, nobody consuming it
        await _paid(lone.settings, name="Not Enrolled")
        assert _queued_syncs() == []

        await box.use()
        configure_queue(box.settings)
        number = await _paid(box.settings)
        queued = _queued_syncs()
        assert len(queued) == 1
        huey.execute(queued[0])  # what the worker does with it
        assert await _at_central(central, number)
    finally:
        configure_queue(box.settings, immediate=True)
