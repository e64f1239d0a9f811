"""Running a scheduled job: a lock so it never overlaps itself, and a record of every run.

A job is an async function ``(settings, today) -> summary dict`` registered in :data:`JOBS`
(see :mod:`appliance.jobs.registry`). :func:`run_job` runs it:

1. **Claim** the job's row in ``job_locks`` inside a write transaction: free, lapsed
   (``expires_at`` passed) or held by a process of this host that no longer exists. A claim
   names its holder (``host|pid|token``) and lasts the job's lease; long jobs extend it with
   :func:`heartbeat`. A worker killed with SIGKILL leaves its claim behind; the next run takes it
   over at once when the dead process was on this host, or after the lease otherwise, and marks
   the dead run *interrupted*.
2. **Record** a ``job_runs`` row (``running``), run the function, then store its end, duration,
   summary (JSON) or error, and release the claim in one transaction.

A run refused because the job is running elsewhere returns ``skipped`` without a row; jobs that
set ``rerun_on_contention`` (outbox delivery) ask the holder to go round once more instead, so a
message queued during a delivery round is not left for the next minute.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from appliance import clock
from appliance.db import new_id, write_transaction
from appliance.jobs.tables import JobLock, JobRun
from appliance.settings import Settings

log = logging.getLogger(__name__)

JobFunc = Callable[[Settings, dt.date], Awaitable[dict[str, Any]]]
PendingFunc = Callable[[Settings, dt.date], Awaitable[bool]]
TRIGGERS = ("schedule", "startup", "catch-up", "manual", "cli")
MAX_RERUNS = 5


@dataclass(frozen=True)
class Job:
    """A scheduled job. ``title`` and ``schedule`` return text in the reader's language (they
    are called when shown). ``period`` names the day, month or year a run covers; the hourly
    catch-up runs the job when no successful run covers the current one. ``startup`` runs it
    whenever the worker starts; ``pending`` (optional) says whether work is left to resume."""

    name: str
    func: JobFunc
    title: Callable[[], str]
    schedule: Callable[[], str]
    lease: dt.timedelta = dt.timedelta(minutes=15)
    period: Callable[[dt.date], str] | None = None
    startup: bool = False
    pending: PendingFunc | None = None
    record_idle: bool = True
    rerun_on_contention: bool = False


JOBS: dict[str, Job] = {}


def register(job: Job) -> Job:
    JOBS[job.name] = job
    return job


def get_job(name: str) -> Job:
    try:
        return JOBS[name]
    except KeyError:
        raise KeyError(f"unknown job {name!r}; known: {', '.join(sorted(JOBS))}") from None


@dataclass
class Outcome:
    job: str
    status: str  # ok, error, skipped
    run_id: uuid.UUID | None = None
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    holder: str = ""


# -- holders -----------------------------------------------------------------------------------


def _host() -> str:
    return socket.gethostname()[:80]


def new_owner() -> str:
    return f"{_host()}|{os.getpid()}|{uuid.uuid4().hex[:12]}"


def _process_gone(pid: int) -> bool:
    """True when no live process has this pid on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


def holder_is_dead(owner: str | None) -> bool:
    """Whether the holder of a claim certainly died. Another host's holder cannot be checked:
    its claim is only taken over once the lease has run out."""
    if not owner:
        return True
    host, _, rest = owner.partition("|")
    pid_text = rest.partition("|")[0]
    if host != _host() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # another thread of this very process holds it
    return _process_gone(pid)


# -- the lock ----------------------------------------------------------------------------------


async def acquire(
    job: str,
    owner: str,
    lease: dt.timedelta,
    *,
    run: JobRun | None = None,
    ask_rerun: bool = False,
) -> tuple[bool, dict[str, Any]]:
    """Claim ``job`` for ``owner`` and save ``run`` with the claim.

    Returns (claimed, the row as it was): when refused, the row names the live holder, and with
    ``ask_rerun`` the holder is asked to go round once more. A claim taken over from a dead or
    lapsed holder marks that holder's run interrupted.
    """
    async with write_transaction():
        await JobLock.insert(JobLock(job=job, rerun=False)).on_conflict(action="DO NOTHING")
        current = (await JobLock.select().where(JobLock.job == job))[0]
        now = clock.now()
        free = current["owner"] is None
        lapsed = current["expires_at"] is not None and current["expires_at"] <= now
        if not (free or lapsed or holder_is_dead(current["owner"])):
            if ask_rerun:
                await JobLock.update({JobLock.rerun: True}).where(
                    (JobLock.job == job) & (JobLock.owner == current["owner"])
                )
            return False, current
        # Compare-and-set on the owner just read, so two claimants cannot both win.
        same_owner = JobLock.owner.is_null() if free else JobLock.owner == current["owner"]
        claimed = (
            await JobLock.update(
                {
                    JobLock.owner: owner,
                    JobLock.acquired_at: now,
                    JobLock.expires_at: now + lease,
                    JobLock.run_id: run.id if run is not None else None,
                    JobLock.rerun: False,
                }
            )
            .where((JobLock.job == job) & same_owner)
            .returning(JobLock.job)
        )
        if not claimed:
            return False, current
        if not free and current["run_id"] is not None:
            await JobRun.update(
                {
                    JobRun.status: "interrupted",
                    JobRun.finished_at: now,
                    JobRun.error: "The process running this job stopped before it finished "
                    "(killed or powered off); a later run took over.",
                }
            ).where((JobRun.id == current["run_id"]) & (JobRun.status == "running"))
            log.warning(
                "job lock taken over from a dead or lapsed holder",
                extra={"job": job, "previous_owner": current["owner"]},
            )
        if run is not None:
            await run.save()
        return True, current


async def release(job: str, owner: str, *, unless_rerun: bool = False) -> bool:
    """Free the claim. With ``unless_rerun``, keep it (and clear the request) when another run
    was asked for meanwhile; returns whether the claim was freed."""
    free = {
        JobLock.owner: None,
        JobLock.expires_at: None,
        JobLock.run_id: None,
        JobLock.rerun: False,
        JobLock.last_released_at: clock.now(),
    }
    where = (JobLock.job == job) & (JobLock.owner == owner)
    async with write_transaction():
        if not unless_rerun:
            await JobLock.update(free).where(where)
            return True
        # One statement each, so a request arriving in between is never lost.
        not_asked = JobLock.rerun.eq(False)
        if await JobLock.update(free).where(where & not_asked).returning(JobLock.job):
            return True
        await JobLock.update({JobLock.rerun: False}).where(where)
        return False


_current: contextvars.ContextVar[tuple[str, str, dt.timedelta] | None] = contextvars.ContextVar(
    "ctvms_job_claim", default=None
)


async def heartbeat() -> None:
    """Extend the running job's claim by its lease (call between batches of long work)."""
    claim = _current.get()
    if claim is None:
        return
    job, owner, lease = claim
    await JobLock.update({JobLock.expires_at: clock.now() + lease}).where(
        (JobLock.job == job) & (JobLock.owner == owner)
    )


# -- running -----------------------------------------------------------------------------------


def _error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]


def _plain(result: Any) -> dict[str, Any]:
    """The summary as plain JSON values (dates and decimals become text)."""
    return json.loads(json.dumps(dict(result), default=str))


def _is_idle(result: dict[str, Any]) -> bool:
    return not any(v for v in result.values() if isinstance(v, int) and not isinstance(v, bool))


def _new_run(job: Job, trigger: str, owner: str, day: dt.date) -> JobRun:
    return JobRun(
        id=new_id(),
        job=job.name,
        trigger=trigger,
        owner=owner,
        period=job.period(day) if job.period else "",
        started_at=clock.now(),
        status="running",
    )


async def run_job(
    settings: Settings,
    name: str,
    *,
    trigger: str = "cli",
    today: dt.date | None = None,
) -> Outcome:
    """Run job ``name`` now unless it is running already, and record the run. A failure of the
    job itself is recorded and returned, never raised."""
    job = get_job(name)
    day = today or clock.today(settings.tz)
    owner = new_owner()
    run = _new_run(job, trigger, owner, day)
    claimed, current = await acquire(
        job.name, owner, job.lease, run=run, ask_rerun=job.rerun_on_contention
    )
    if not claimed:
        log.info("job skipped: already running", extra={"job": job.name})
        return Outcome(job.name, "skipped", holder=current.get("owner") or "")
    token = _current.set((job.name, owner, job.lease))
    freed = False
    try:
        for round_ in range(MAX_RERUNS):
            if round_:
                run = _new_run(job, trigger, owner, day)
                await run.save()
            outcome = await _execute(settings, job, run, day, trigger)
            if not job.rerun_on_contention or outcome.status != "ok":
                break
            if await release(job.name, owner, unless_rerun=True):
                freed = True
                break
    finally:
        _current.reset(token)
        if not freed:
            await release(job.name, owner)
    return outcome


async def _execute(
    settings: Settings, job: Job, run: JobRun, day: dt.date, trigger: str
) -> Outcome:
    t0 = time.monotonic()
    result: dict[str, Any] = {}
    error = ""
    try:
        result = _plain(await job.func(settings, day) or {})
    except Exception as exc:
        log.exception("job failed", extra={"job": job.name, "run_id": str(run.id)})
        error = _error_text(exc)
    duration_ms = int((time.monotonic() - t0) * 1000)
    status = "error" if error else "ok"
    if status == "ok" and not job.record_idle and _is_idle(result):
        await JobRun.delete().where(JobRun.id == run.id)
    else:
        await JobRun.update(
            {
                JobRun.finished_at: clock.now(),
                JobRun.duration_ms: duration_ms,
                JobRun.status: status,
                JobRun.result: result,
                JobRun.error: error,
            }
        ).where(JobRun.id == run.id)
        if status == "ok":
            log.info(
                "job finished",
                extra={
                    "job": job.name,
                    "trigger": trigger,
                    "duration_ms": duration_ms,
                    "result": json.dumps(result, sort_keys=True),
                },
            )
    return Outcome(job.name, status, run_id=run.id, result=result, error=error)


async def due_jobs(settings: Settings, *, startup: bool, today: dt.date | None = None) -> list[str]:
    """Jobs to run now: at start-up those marked ``startup``; at any catch-up, those whose
    current period has no successful run and those with unfinished work."""
    day = today or clock.today(settings.tz)
    names = []
    for job in JOBS.values():
        if startup and job.startup:
            names.append(job.name)
            continue
        if job.period is not None:
            ok = await JobRun.count().where(
                (JobRun.job == job.name)
                & (JobRun.period == job.period(day))
                & (JobRun.status == "ok")
            )
            if not ok:
                names.append(job.name)
                continue
        if job.pending is not None and await job.pending(settings, day):
            names.append(job.name)
    return names


async def catch_up(
    settings: Settings, *, trigger: str = "catch-up", today: dt.date | None = None
) -> dict[str, str]:
    """Run every job that is due (see :func:`due_jobs`), in registry order."""
    outcomes = {}
    for name in await due_jobs(settings, startup=trigger == "startup", today=today):
        outcome = await run_job(settings, name, trigger=trigger, today=today)
        outcomes[name] = outcome.status
    return outcomes


async def job_overview() -> list[dict[str, Any]]:
    """Each job with its last run and its claim, for the System page and ``ctvms jobs list``."""
    locks = {r["job"]: r for r in await JobLock.select()}
    overview = []
    for job in JOBS.values():
        last = (
            await JobRun.select()
            .where(JobRun.job == job.name)
            .order_by(JobRun.started_at, ascending=False)
            .limit(1)
        )
        last_ok = (
            await JobRun.select(JobRun.started_at, JobRun.period)
            .where((JobRun.job == job.name) & (JobRun.status == "ok"))
            .order_by(JobRun.started_at, ascending=False)
            .limit(1)
        )
        lock = locks.get(job.name) or {}
        overview.append(
            {
                "job": job,
                "last": _decoded(last[0]) if last else None,
                "last_ok": last_ok[0] if last_ok else None,
                "running": bool(lock.get("owner")),
                "lock": lock,
            }
        )
    return overview


async def recent_runs(*, job: str | None = None, limit: int = 30) -> list[dict[str, Any]]:
    query = JobRun.select().order_by(JobRun.started_at, ascending=False).limit(limit)
    if job:
        query = query.where(JobRun.job == job)
    return [_decoded(r) for r in await query]


def _decoded(run: dict[str, Any]) -> dict[str, Any]:
    """A job_runs row with its summary as a dict (SQLite hands JSON back as text)."""
    if isinstance(run.get("result"), str):
        run["result"] = json.loads(run["result"] or "{}")
    return run
