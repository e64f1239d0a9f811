"""The System pages (admins): scheduled jobs with "Run now", the outbox, e-mail previews."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from appliance import i18n
from appliance.jobs import registry  # noqa: F401  (registers the jobs)
from appliance.jobs.queue import enqueue_quietly
from appliance.jobs.runner import JOBS, job_overview, recent_runs
from appliance.mail import service as mail
from appliance.mail.tables import MAIL_STATUSES, OutboxMessage
from appliance.system import service as system
from appliance.web.auth import ADMIN
from appliance.web.forms import see_other, settings_of

# The preview of an HTML e-mail is shown in a sandboxed frame of this site: its own policy
# allows the inline styles e-mails use, and nothing else (no scripts, no requests).
PREVIEW_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "frame-ancestors 'self'; base-uri 'none'; sandbox",
    "x-frame-options": "SAMEORIGIN",
}


@get("/system", opt={"roles": ADMIN})
async def system_page(queued: FromQuery[str] = "") -> Template:
    return Template(
        "system/jobs.html",
        context={
            "jobs": await job_overview(),
            "runs": await recent_runs(limit=30),
            "queued": JOBS.get(queued),
            "worker_last_seen": await system.worker_last_seen(),
            "worker_silent": await system.worker_silent(),
        },
    )


@post("/system/jobs/{name:str}/run", opt={"roles": ADMIN})
async def run_now(name: FromPath[str]) -> Redirect:
    from appliance.jobs.tasks import run_job_task

    if name not in JOBS:
        raise NotFoundException()
    enqueue_quietly(run_job_task, name, "manual")
    return see_other(f"/system?queued={name}")


async def _outbox_counts() -> dict[str, int]:
    rows = await OutboxMessage.raw("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status")
    counts = dict.fromkeys(MAIL_STATUSES, 0)
    counts.update({r["status"]: int(r["n"]) for r in rows})
    return counts


@get("/system/outbox", opt={"roles": ADMIN})
async def outbox_page(status: FromQuery[str] = "", retried: FromQuery[bool] = False) -> Template:
    status = status if status in MAIL_STATUSES else ""
    return Template(
        "system/outbox.html",
        context={
            "messages": await mail.list_outbox(status=status or None, limit=200),
            "counts": await _outbox_counts(),
            "status": status,
            "statuses": MAIL_STATUSES,
            "retried": retried,
        },
    )


@post("/system/outbox/{message_id:uuid}/retry", opt={"roles": ADMIN})
async def retry_message(message_id: FromPath[UUID]) -> Redirect:
    await mail.retry(message_id)
    mail.kick()
    return see_other("/system/outbox?status=failed&retried=true")


@get("/system/mail", opt={"roles": ADMIN})
async def mail_templates(
    request: Request, kind: FromQuery[str] = "", lang: FromQuery[str] = ""
) -> Template:
    kinds = system.template_kinds()
    kind = kind if kind in kinds else (kinds[0] if kinds else "")
    lang = lang if lang in i18n.SUPPORTED else settings_of(request).locale
    current: dict[str, Any] | None = None
    if kind:
        current = system.preview(settings_of(request), kind, locale=lang)
    return Template(
        "system/mail.html",
        context={"kinds": kinds, "kind": kind, "lang": lang, "preview": current},
    )


@get("/system/mail/{kind:str}/html", opt={"roles": ADMIN})
async def mail_html(request: Request, kind: FromPath[str], lang: FromQuery[str] = "") -> Response:
    lang = lang if lang in i18n.SUPPORTED else settings_of(request).locale
    try:
        current = system.preview(settings_of(request), kind, locale=lang)
    except KeyError:
        raise NotFoundException() from None
    body = current.get("html") or ""
    return Response(body, media_type="text/html", headers=PREVIEW_HEADERS)


ROUTES = [
    system_page,
    run_now,
    outbox_page,
    retry_message,
    mail_templates,
    mail_html,
]
