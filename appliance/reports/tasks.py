"""Background work for reports: build a large one, delete old ones."""

from __future__ import annotations

import logging
from typing import Any

from huey import crontab

from appliance.jobs.queue import huey, run_async, task_settings
from appliance.reports import service

log = logging.getLogger(__name__)


@huey.task(name="build_report")
def build_report_task(job_id: str) -> dict[str, Any] | None:
    """Write one report's file (see :func:`appliance.reports.service.build_report`)."""
    settings = task_settings()
    return run_async(lambda: service.build_report(job_id, settings))


@huey.periodic_task(crontab(minute="17"), name="report_cleanup_hourly")
def report_cleanup_hourly() -> dict[str, int]:
    settings = task_settings()
    return run_async(lambda: service.cleanup(settings))
