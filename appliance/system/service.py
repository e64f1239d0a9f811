"""The System page's data: scheduled jobs, the worker's heartbeat, e-mail template previews."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from appliance import clock, i18n
from appliance.jobs.tables import JobLock
from appliance.mail import service as mail
from appliance.settings import Settings

log = logging.getLogger(__name__)

# The outbox job runs every minute, so a worker silent for longer than this is not running.
WORKER_SILENCE = dt.timedelta(minutes=5)


def template_kinds() -> list[str]:
    """Every e-mail template found in the templates folder."""
    return sorted(p.name.removesuffix(".subject.txt") for p in mail.TEMPLATES.glob("*.subject.txt"))


def _samples(today: dt.date) -> dict[str, dict[str, Any]]:
    """Made-up data for each kind of e-mail, in the reader's language where it is text."""
    from appliance.plans.service import service_label

    _ = i18n.gettext
    month = today.replace(day=1)
    previous = (month - dt.timedelta(days=1)).replace(day=1)
    name = "Maria da Silva"
    return {
        "credentials": {
            "name": name,
            "crf": "MM000123",
            "email": "maria@example.com",
            "password": "tulip-9-river-4",
        },
        "otp": {"name": name, "code": "482915", "minutes": 10},
        "invoice": {
            "name": name,
            "number": f"MM-{today.year}-000042",
            "amount_paid": 25000,
            "months": [
                f"{i18n.month_name(previous.month)} {previous.year}",
                f"{i18n.month_name(month.month)} {month.year}",
            ],
            "remaining_due": 4990,
        },
        "reminder": {
            "name": name,
            "crf": "MM000123",
            "amount_due": 23980,
            "credit": 0,
            "services": [
                {
                    "service": "cable",
                    "label": service_label("cable"),
                    "amount": 9990,
                    "months": [previous, month],
                },
                {
                    "service": "broadband",
                    "label": service_label("broadband"),
                    "amount": 13990,
                    "months": [month],
                },
            ],
        },
        "complaint_received": {
            "name": name,
            "number": f"MM-C-{today.year}-0007",
            "raised_on": today,
            "category": _("No signal"),
            "message": _("The TV shows no signal since this morning."),
        },
        "complaint_resolved": {
            "name": name,
            "number": f"MM-C-{today.year}-0007",
            "raised_on": today,
            "category": _("No signal"),
            "resolution": _("The cable was cut by a truck; the technician replaced it."),
        },
    }


def preview(settings: Settings, kind: str, *, locale: str) -> dict[str, Any]:
    """Subject, text and HTML of ``kind`` rendered with sample data, or the reason it failed."""
    if kind not in template_kinds():
        raise KeyError(kind)
    with i18n.use_locale(locale):
        sample = _samples(clock.today(settings.tz)).get(kind)
    if sample is None:
        return {"kind": kind, "error": i18n.gettext("There is no sample data for this e-mail.")}
    context = {"office_name": settings.office_name, "currency": settings.currency, **sample}
    try:
        subject, text, html = mail.render(kind, context, locale=locale)
    except Exception as exc:  # a template another feature changed: show why, do not crash
        log.warning("e-mail template preview failed", extra={"kind": kind}, exc_info=True)
        return {"kind": kind, "error": f"{type(exc).__name__}: {exc}"}
    return {"kind": kind, "subject": subject, "text": text, "html": html, "error": ""}


async def worker_last_seen() -> dt.datetime | None:
    """When the worker last finished its every-minute e-mail round."""
    from appliance.jobs.registry import OUTBOX

    rows = await JobLock.select(JobLock.last_released_at).where(JobLock.job == OUTBOX)
    return rows[0]["last_released_at"] if rows else None


async def worker_silent() -> bool:
    last = await worker_last_seen()
    return last is None or clock.now() - last > WORKER_SILENCE
