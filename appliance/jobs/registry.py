"""The scheduled jobs of the appliance, in the order a catch-up runs them.

Each job is a thin wrapper: it calls the feature's domain function with the office day and
returns its summary. Scheduling lives in :mod:`appliance.jobs.tasks`; locking and the record of
runs in :mod:`appliance.jobs.runner`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from appliance.customers.status import update_statuses
from appliance.i18n import gettext as _
from appliance.jobs.runner import Job, register
from appliance.settings import Settings

STATUS_UPDATER = "status-updater"
YEAR_UPDATER = "year-updater"
BILLING = "billing"
OUTBOX = "outbox"
REMINDERS = "reminders"
BACKUP = "backup"
SYNC = "sync"


def daily(day: dt.date) -> str:
    return day.isoformat()


def monthly(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def yearly(day: dt.date) -> str:
    return f"{day.year:04d}"


async def _year_updater(settings: Settings, day: dt.date) -> dict[str, Any]:
    from appliance.billing import charges

    return await charges.ensure_year(settings, day.year)


async def _billing(settings: Settings, day: dt.date) -> dict[str, Any]:
    from appliance.billing import charges

    return await charges.bill_month(settings, day.year, day.month)


async def _status_updater(settings: Settings, day: dt.date) -> dict[str, Any]:
    return await update_statuses(settings, today=day)


async def _outbox(settings: Settings, day: dt.date) -> dict[str, Any]:
    from appliance.mail import service as mail

    return await mail.deliver_due(settings)


async def _backup(settings: Settings, day: dt.date) -> dict[str, Any]:
    from appliance.backup import service as backup

    return await backup.nightly_backup(settings, day)


async def _reminders(settings: Settings, day: dt.date) -> dict[str, Any]:
    from appliance.reminders import service as reminders

    return await reminders.process_unfinished(settings)


async def _sync(settings: Settings, day: dt.date) -> dict[str, Any]:
    from appliance.sync import job as sync_job

    return await sync_job.run_round(settings, day)


async def _reminders_pending(settings: Settings, day: dt.date) -> bool:
    from appliance.reminders import service as reminders

    return await reminders.has_unfinished()


# Order matters for a catch-up after the box was off: the year opened first, then the months
# billed, then statuses from the expiry dates.
register(
    Job(
        name=YEAR_UPDATER,
        func=_year_updater,
        title=lambda: _("Year updater"),
        schedule=lambda: _("1 January at 00:05, and at every start"),
        lease=dt.timedelta(hours=2),
        period=yearly,
        startup=True,
    )
)
register(
    Job(
        name=BILLING,
        func=_billing,
        title=lambda: _("Monthly billing"),
        schedule=lambda: _("The 1st of each month at 00:10; missed months at the next start"),
        lease=dt.timedelta(hours=2),
        period=monthly,
    )
)
register(
    Job(
        name=STATUS_UPDATER,
        func=_status_updater,
        title=lambda: _("Status updater"),
        schedule=lambda: _("Daily at 00:01, and at every start"),
        lease=dt.timedelta(minutes=30),
        period=daily,
        startup=True,
    )
)
register(
    Job(
        name=REMINDERS,
        func=_reminders,
        title=lambda: _("Reminder sender"),
        schedule=lambda: _("When an admin sends reminders; unfinished sends resume at start"),
        lease=dt.timedelta(minutes=10),
        pending=_reminders_pending,
    )
)
register(
    Job(
        name=OUTBOX,
        func=_outbox,
        title=lambda: _("E-mail delivery"),
        schedule=lambda: _("Every minute, and right after a message is queued"),
        lease=dt.timedelta(minutes=10),
        record_idle=False,
        rerun_on_contention=True,
    )
)
register(
    Job(
        name=BACKUP,
        func=_backup,
        title=lambda: _("Nightly backup"),
        schedule=lambda: _("Daily at 02:30; if missed, within the hour after the box is back"),
        lease=dt.timedelta(hours=1),
        period=daily,
    )
)
register(
    Job(
        name=SYNC,
        func=_sync,
        title=lambda: _("Sync with central"),
        schedule=lambda: _(
            "Every 5 minutes and right after a payment, on an enrolled box; "
            "backs off while central is unreachable"
        ),
        lease=dt.timedelta(minutes=30),
        record_idle=False,
        rerun_on_contention=True,
    )
)
