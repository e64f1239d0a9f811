"""Running jobs: the lock, the record of runs, takeover from dead workers, the catch-up."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys

import pytest

from appliance import clock
from appliance.jobs import registry
from appliance.jobs.runner import (
    JOBS,
    Job,
    catch_up,
    due_jobs,
    heartbeat,
    job_overview,
    new_owner,
    register,
    run_job,
)
from appliance.jobs.tables import JobLock, JobRun
from tests.helpers import make_customer, make_plan
from tests.jobs.conftest import set_connection


@pytest.fixture
def job_factory():
    """Register throw-away jobs through the public registry; removed afterwards."""
    names = []

    def make(name, func, **kw):
        kw.setdefault("title", lambda: name)
        kw.setdefault("schedule", lambda: "test")
        register(Job(name=name, func=func, **kw))
        names.append(name)
        return name

    yield make
    for name in names:
        JOBS.pop(name, None)


async def _runs(job):
    return await JobRun.select().where(JobRun.job == job).order_by(JobRun.started_at)


async def test_a_run_is_recorded_with_its_summary(settings):
    plan = await make_plan()
    customer = await make_customer(
        settings,
        cable_plan=str(plan["id"]),
        cable_registered_on="2020-01-01",
        cable_expires_on="2020-01-31",
    )
    await set_connection(customer["connections"]["cable"]["id"], status="active")
    outcome = await run_job(
        settings, registry.STATUS_UPDATER, trigger="cli", today=dt.date(2027, 1, 1)
    )
    assert outcome.status == "ok"
    runs = await _runs(registry.STATUS_UPDATER)
    assert len(runs) == 1
    run = runs[0]
    assert run["status"] == "ok" and run["trigger"] == "cli" and run["period"] == "2027-01-01"
    assert run["finished_at"] >= run["started_at"] and run["duration_ms"] >= 0
    result = run["result"]
    result = result if isinstance(result, dict) else __import__("json").loads(result)
    assert result["suspended"] == 1 and result["today"] == "2027-01-01"
    # The claim is given back.
    lock = (await JobLock.select().where(JobLock.job == registry.STATUS_UPDATER))[0]
    assert lock["owner"] is None and lock["last_released_at"] is not None


async def test_a_failure_is_recorded_with_its_error(settings, job_factory):
    async def broken(settings, today):
        raise ValueError("the ledger is on fire")

    name = job_factory("test-broken", broken)
    outcome = await run_job(settings, name, trigger="manual")
    assert outcome.status == "error" and "the ledger is on fire" in outcome.error
    run = (await _runs(name))[0]
    assert run["status"] == "error"
    assert "ValueError: the ledger is on fire" in run["error"]
    assert run["finished_at"] is not None
    # A failed run does not keep the job locked.
    assert (await run_job(settings, name)).status == "error"


async def test_a_second_concurrent_run_is_skipped(settings, job_factory):
    started, release = asyncio.Event(), asyncio.Event()
    calls = []

    async def slow(settings, today):
        calls.append(today)
        started.set()
        await release.wait()
        await heartbeat()
        return {"done": 1}

    name = job_factory("test-slow", slow)
    first = asyncio.create_task(run_job(settings, name, trigger="schedule"))
    await asyncio.wait_for(started.wait(), 10)
    second = await run_job(settings, name, trigger="manual")
    assert second.status == "skipped" and second.holder
    release.set()
    assert (await asyncio.wait_for(first, 10)).status == "ok"
    assert len(calls) == 1
    assert [r["status"] for r in await _runs(name)] == ["ok"]
    # Free again afterwards.
    assert (await run_job(settings, name)).status == "ok"


async def test_a_refused_run_makes_the_holder_go_round_again(settings, job_factory):
    started, release = asyncio.Event(), asyncio.Event()
    calls = []

    async def delivery(settings, today):
        calls.append(1)
        if len(calls) == 1:
            started.set()
            await release.wait()
        return {"sent": 1}

    name = job_factory("test-delivery", delivery, rerun_on_contention=True)
    first = asyncio.create_task(run_job(settings, name))
    await asyncio.wait_for(started.wait(), 10)
    assert (await run_job(settings, name)).status == "skipped"
    release.set()
    await asyncio.wait_for(first, 10)
    assert len(calls) == 2
    lock = (await JobLock.select().where(JobLock.job == name))[0]
    assert lock["owner"] is None and not lock["rerun"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def _stale_claim(job: str, owner: str, expires_at: dt.datetime) -> object:
    run = JobRun(job=job, trigger="schedule", owner=owner, started_at=clock.now(), status="running")
    await run.save()
    await JobLock(
        job=job, owner=owner, acquired_at=clock.now(), expires_at=expires_at, run_id=run.id
    ).save()
    return run.id


async def test_the_claim_of_a_killed_worker_on_this_host_is_taken_over(settings, job_factory):
    async def quick(settings, today):
        return {"n": 1}

    name = job_factory("test-takeover", quick)
    host = new_owner().split("|")[0]
    dead = await _stale_claim(
        name, f"{host}|{_dead_pid()}|deadbeef", clock.now() + dt.timedelta(hours=1)
    )
    outcome = await run_job(settings, name)
    assert outcome.status == "ok"
    runs = {r["id"]: r for r in await _runs(name)}
    assert runs[dead]["status"] == "interrupted" and runs[dead]["error"]
    assert runs[outcome.run_id]["status"] == "ok"


async def test_a_lapsed_claim_is_taken_over_a_live_one_is_not(settings, job_factory):
    async def quick(settings, today):
        return {"n": 1}

    name = job_factory("test-lapse", quick)
    # Another host's claim cannot be checked for liveness: it holds until its lease ends.
    await _stale_claim(name, "other-box|1234|cafe", clock.now() + dt.timedelta(minutes=5))
    assert (await run_job(settings, name)).status == "skipped"
    clock.shift(dt.timedelta(minutes=6))
    assert (await run_job(settings, name)).status == "ok"
    statuses = sorted(r["status"] for r in await _runs(name))
    assert statuses == ["interrupted", "ok"]


async def test_catch_up_runs_what_the_period_misses(settings):
    day = dt.date(2027, 5, 10)
    first = await due_jobs(settings, startup=False, today=day)
    assert registry.STATUS_UPDATER in first and registry.OUTBOX not in first
    await run_job(settings, registry.STATUS_UPDATER, today=day)
    later = await due_jobs(settings, startup=False, today=day)
    assert registry.STATUS_UPDATER not in later
    # The next office day needs a run again; at start-up it always runs.
    assert registry.STATUS_UPDATER in await due_jobs(
        settings, startup=False, today=day + dt.timedelta(days=1)
    )
    assert registry.STATUS_UPDATER in await due_jobs(settings, startup=True, today=day)


async def test_startup_catch_up_runs_status_and_year_updaters(settings):
    outcomes = await catch_up(settings, trigger="startup")
    assert outcomes[registry.STATUS_UPDATER] == "ok"
    assert outcomes[registry.YEAR_UPDATER] == "ok"
    overview = {row["job"].name: row for row in await job_overview()}
    assert overview[registry.STATUS_UPDATER]["last"]["trigger"] == "startup"
    assert overview[registry.OUTBOX]["last"] is None
