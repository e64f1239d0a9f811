"""Background tasks and their schedule. Each task opens what it needs, runs a job through
:func:`appliance.jobs.runner.run_job` (lock and record) and returns its summary.

When the schedule fires: huey checks periodic tasks once a minute with a naive UTC timestamp
(the queue is built with ``utc=True``). :func:`office_crontab` turns that timestamp into the
office's wall time before matching, so "00:01" means just after the office's midnight, also
across daylight-saving changes and in half-hour zones; a UTC crontab fixed at import could not
follow either. A tick can still be missed (the worker busy or stopped, the clock set late after a
power cut), so an hourly catch-up runs any job whose day, month or year has no successful run yet,
and the worker runs the same catch-up when it starts. Every job is idempotent, so an extra run
costs a little time and never changes the outcome.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
from collections.abc import Callable
from typing import Any

from huey import crontab

from appliance.jobs import registry
from appliance.jobs.queue import huey, run_async, task_settings
from appliance.jobs.runner import catch_up, run_job
from appliance.reports import tasks as report_tasks  # noqa: F401  (registers its tasks)

log = logging.getLogger(__name__)


def office_crontab(**fields: str) -> Callable[[dt.datetime], bool]:
    """Like huey's ``crontab``, but matched against the office's local time."""
    match = crontab(**fields)

    def validate(timestamp: dt.datetime) -> bool:
        try:
            tz = task_settings().tz
        except RuntimeError:
            return False
        local = timestamp.replace(tzinfo=dt.UTC).astimezone(tz).replace(tzinfo=None)
        return match(local)

    return validate


def _run(name: str, trigger: str) -> dict[str, Any]:
    settings = task_settings()
    outcome = run_async(lambda: run_job(settings, name, trigger=trigger))
    return {"status": outcome.status, **outcome.result}


@huey.task(name="run_job")
def run_job_task(name: str, trigger: str = "manual") -> dict[str, Any]:
    """Run one job now (the System page's "Run now", a queued reminder send)."""
    return _run(name, trigger)


@huey.task(name="catch_up")
def catch_up_task(trigger: str = "catch-up") -> dict[str, str]:
    settings = task_settings()
    return run_async(lambda: catch_up(settings, trigger=trigger))


# Feature modules that define huey tasks: the worker imports them so its consumer knows every
# task the web server may enqueue. Add one line per module.
TASK_MODULES = [
    "appliance.invoices.tasks",
    "appliance.reports.tasks",
]


def load_task_modules() -> None:
    for name in TASK_MODULES:
        importlib.import_module(name)


def startup_catch_up() -> None:
    """Prepare the worker before it consumes (called by ``ctvms worker``): register every
    feature's tasks, then queue the start-up catch-up."""
    load_task_modules()
    catch_up_task("startup")


@huey.task(name="deliver_outbox")
def deliver_outbox() -> dict[str, Any]:
    """Deliver right away (``mail.kick()`` after a message was queued)."""
    return _run(registry.OUTBOX, "schedule")


@huey.periodic_task(crontab(minute="*"), name="deliver_outbox_periodic")
def deliver_outbox_periodic() -> dict[str, Any]:
    return _run(registry.OUTBOX, "schedule")


@huey.task(name="sync_now")
def sync_now() -> dict[str, Any]:
    """A sync round right away (after a payment, see ``appliance.sync.job.sync_soon``)."""
    return _run(registry.SYNC, "schedule")


@huey.periodic_task(crontab(minute="*/5"), name="sync_periodic")
def sync_periodic() -> dict[str, Any]:
    return _run(registry.SYNC, "schedule")


@huey.periodic_task(office_crontab(minute="1", hour="0"), name="status_updater_daily")
def status_updater_daily() -> dict[str, Any]:
    return _run(registry.STATUS_UPDATER, "schedule")


@huey.periodic_task(
    office_crontab(minute="5", hour="0", day="1", month="1"), name="year_updater_yearly"
)
def year_updater_yearly() -> dict[str, Any]:
    return _run(registry.YEAR_UPDATER, "schedule")


@huey.periodic_task(office_crontab(minute="10", hour="0", day="1"), name="billing_monthly")
def billing_monthly() -> dict[str, Any]:
    return _run(registry.BILLING, "schedule")


@huey.periodic_task(office_crontab(minute="30", hour="2"), name="backup_nightly")
def backup_nightly() -> dict[str, Any]:
    return _run(registry.BACKUP, "schedule")


@huey.periodic_task(office_crontab(minute="30"), name="catch_up_hourly")
def catch_up_hourly() -> dict[str, str]:
    settings = task_settings()
    return run_async(lambda: catch_up(settings, trigger="catch-up"))
