"""Real processes: ``ctvms jobs run`` and a ``ctvms worker`` killed mid-run, then restarted."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import subprocess
import sys
import time

import asyncpg

from appliance.customers.tables import Connection
from appliance.jobs import registry
from appliance.jobs.runner import JOBS
from appliance.jobs.tables import JobLock, JobRun
from tests.helpers import make_customer, make_plan
from tests.jobs.conftest import cli_env, set_connection

DEADLINE_S = 60


def ctvms(*args: str) -> list[str]:
    return [sys.executable, "-m", "appliance.cli", *args]


async def _seed_lapsed(settings, n: int = 3) -> list[object]:
    plan = await make_plan()
    ids = []
    for _ in range(n):
        c = await make_customer(
            settings,
            cable_plan=str(plan["id"]),
            cable_registered_on="2020-01-01",
            cable_expires_on="2020-06-30",
            cable_status="active",
        )
        ids.append(c["connections"]["cable"]["id"])
        await set_connection(ids[-1], expires_on=dt.date(2020, 6, 30), status="active")
    return ids


async def test_jobs_run_status_updater_command(settings, tmp_path):
    ids = await _seed_lapsed(settings, 2)
    proc = await asyncio.to_thread(
        subprocess.run,
        ctvms("jobs", "run", "status-updater", "--today", "2027-01-01"),
        env=cli_env(settings),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["status"] == "ok" and out["result"]["suspended"] == 2
    rows = await Connection.select(Connection.status).where(Connection.id.is_in(ids))
    assert {r["status"] for r in rows} == {"suspended"}
    runs = await JobRun.select().where(JobRun.job == "status-updater")
    assert [(r["trigger"], r["status"]) for r in runs] == [("cli", "ok")]

    listing = await asyncio.to_thread(
        subprocess.run,
        ctvms("jobs", "list"),
        env=cli_env(settings),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert listing.returncode == 0, listing.stderr
    lines = {line.split()[0]: line for line in listing.stdout.splitlines()}
    assert set(JOBS) <= set(lines)
    assert "last ok" in lines["status-updater"] and "never run" in lines["billing"]

    unknown = await asyncio.to_thread(
        subprocess.run,
        ctvms("jobs", "run", "no-such-job"),
        env=cli_env(settings),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert unknown.returncode != 0 and "unknown job" in unknown.stderr


async def _wait_for(condition, what: str, deadline_s: float = DEADLINE_S):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = await condition()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


async def test_worker_killed_mid_run_finishes_after_restart(pg_settings, tmp_path):
    """PostgreSQL lets the test block exactly one table: the worker claims the job, records
    its run and then waits on the UPDATE of ``connections``, where it is killed."""
    settings = pg_settings
    ids = await _seed_lapsed(settings)
    env = cli_env(settings)
    blocker = await asyncpg.connect(settings.database_url)
    log1 = open(tmp_path / "worker1.log", "w")  # noqa: SIM115
    log2 = open(tmp_path / "worker2.log", "w")  # noqa: SIM115
    worker = restarted = None
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE connections IN SHARE ROW EXCLUSIVE MODE")
        worker = subprocess.Popen(
            ctvms("worker", "--workers", "1"), env=env, cwd=tmp_path, stdout=log1, stderr=log1
        )

        async def stuck_run():
            # Running for over a second: the job blocked on the lock, not one that was caught
            # in the few milliseconds of an ordinary run (which then ends "ok").
            started_before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
            rows = await JobRun.select().where(
                (JobRun.status == "running") & (JobRun.started_at < started_before)
            )
            locks = await JobLock.select().where(JobLock.owner.is_not_null())
            held = {r["run_id"] for r in locks}
            return [r for r in rows if r["id"] in held]

        stuck = await _wait_for(stuck_run, "a job blocked mid-run")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        await tx.rollback()

        # Nothing was half-written: the killed transaction rolled back.
        rows = await Connection.select(Connection.status).where(Connection.id.is_in(ids))
        assert {r["status"] for r in rows} == {"active"}

        restarted = subprocess.Popen(
            ctvms("worker", "--workers", "1"), env=env, cwd=tmp_path, stdout=log2, stderr=log2
        )

        async def updated():
            ok = await JobRun.count().where(
                (JobRun.job == registry.STATUS_UPDATER) & (JobRun.status == "ok")
            )
            return ok > 0

        await _wait_for(updated, "the status updater to finish after the restart")
        rows = await Connection.select(Connection.status).where(Connection.id.is_in(ids))
        assert {r["status"] for r in rows} == {"suspended"}
        await _wait_for(
            lambda: _status_of(stuck[0]["id"], "interrupted"), "the dead run to be marked"
        )
    finally:
        await blocker.close()
        for proc in (worker, restarted):
            if proc is not None:
                _stop(proc)
        log1.close()
        log2.close()


async def _status_of(run_id, status: str) -> bool:
    rows = await JobRun.select(JobRun.status).where(JobRun.id == run_id)
    return bool(rows) and rows[0]["status"] == status
