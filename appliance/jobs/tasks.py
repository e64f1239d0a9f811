"""Background tasks. Each opens what it needs, calls domain code and returns its summary."""

from __future__ import annotations

import logging

from huey import crontab

from appliance.invoices import tasks as invoice_tasks  # noqa: F401  (registers its tasks)
from appliance.reports import tasks as report_tasks  # noqa: F401  (registers its tasks)
from appliance.jobs.queue import huey, run_async, task_settings
from appliance.mail import service as mail

log = logging.getLogger(__name__)


@huey.task(name="deliver_outbox")
def deliver_outbox() -> dict[str, int]:
    settings = task_settings()
    return run_async(lambda: mail.deliver_due(settings))


@huey.periodic_task(crontab(minute="*"), name="deliver_outbox_periodic")
def deliver_outbox_periodic() -> dict[str, int]:
    settings = task_settings()
    return run_async(lambda: mail.deliver_due(settings))
