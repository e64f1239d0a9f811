"""Outgoing e-mail through a transactional outbox.

:func:`queue` renders a message and stores it in the caller's transaction, so an e-mail exists
if and only if the event that caused it committed. :func:`deliver_due` (run by the worker)
hands queued messages to the SMTP server, with retries and back-off while the server is down
or answers 4xx, and marks a message failed on a permanent 5xx answer.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import logging
import mimetypes
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from appliance import clock, i18n
from appliance.mail.tables import OutboxMessage
from appliance.settings import Settings

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
MAX_ATTEMPTS = 12
BASE_DELAY = dt.timedelta(seconds=30)
MAX_DELAY = dt.timedelta(hours=1)
SMTP_TIMEOUT_S = 20


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        lambda m, **kw: i18n.gettext(m, **kw),
        lambda s, p, n, **kw: i18n.ngettext(s, p, n, **kw),
        newstyle=True,
    )
    env.filters["money"] = i18n.money
    env.filters["date"] = i18n.date
    return env


def render(kind: str, context: dict[str, Any], *, locale: str) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of the ``kind`` template in ``locale``."""
    env = _environment()
    with i18n.use_locale(locale):
        subject = env.get_template(f"{kind}.subject.txt").render(context).strip()
        text = env.get_template(f"{kind}.txt").render(context)
        html = env.get_template(f"{kind}.html").render(context)
    return subject, text, html


async def queue(
    *,
    settings: Settings,
    kind: str,
    to: str,
    context: dict[str, Any],
    locale: str | None = None,
    attachments: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Render and store a message; call inside the transaction of the event causing it."""
    context = {"office_name": settings.office_name, "currency": settings.currency, **context}
    subject, text, html = render(kind, context, locale=locale or settings.locale)
    domain = settings.mail_from.rpartition("@")[2] or "ctvms.local"
    row = OutboxMessage(
        message_id=make_msgid(idstring=kind, domain=domain),
        kind=kind,
        to_addr=to,
        subject=subject,
        body_text=text,
        body_html=html,
        attachments=attachments or [],
        status="queued",
        next_attempt_at=clock.now(),
    )
    await row.save()
    log.info("e-mail queued", extra={"kind": kind, "outbox_id": str(row.id)})
    return row.to_dict()


# Headers set with ``set_raw`` are written as they are; every other header is still folded at 78
# columns as usual.
_POLICY = email.policy.default.clone(refold_source="none")


def build_message(row: dict[str, Any], settings: Settings) -> EmailMessage:
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = f"{settings.office_name} <{settings.mail_from}>"
    msg["To"] = row["to_addr"]
    msg["Subject"] = row["subject"]
    # The Message-ID (ours, from make_msgid: no spaces or line breaks) stays on one line. It is
    # longer than 78 columns with its header name, and folded it would start on a continuation
    # line: legal, but readers such as Python's parser then keep the fold's space in the value,
    # and a duplicate sent after a crash is only recognised by an identical Message-ID.
    msg.set_raw("Message-ID", row["message_id"])
    msg["Date"] = formatdate(row["created_at"].timestamp(), localtime=False)
    msg.set_content(row["body_text"])
    if row["body_html"]:
        msg.add_alternative(row["body_html"], subtype="html")
    for item in _attachments(row):
        path = Path(item["path"])
        ctype = item.get("type") or mimetypes.guess_type(path.name)[0] or "application/pdf"
        maintype, _, subtype = ctype.partition("/")
        msg.add_attachment(
            path.read_bytes(),
            maintype=maintype,
            subtype=subtype,
            filename=item.get("filename") or path.name,
        )
    return msg


def _attachments(row: dict[str, Any]) -> list[dict[str, str]]:
    import json

    value = row["attachments"]
    return json.loads(value) if isinstance(value, str) else list(value or [])


class _Permanent(Exception):
    pass


class _AttachmentUnavailable(Exception):
    """A file to attach could not be made now (rendering failed); try again later."""


async def resolve_attachments(row: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The row with every ``{"invoice": number}`` item turned into the invoice's PDF file.

    Invoices are attached by number rather than by path so the message carries the PDF as it
    is at delivery time, rendered again from the database if the cached file is missing or
    damaged. An invoice that does not exist fails the message; a render that fails retries.
    """
    items = _attachments(row)
    if not any("invoice" in item for item in items):
        return row
    from appliance.errors import NotFound
    from appliance.invoices.service import ensure_pdf

    resolved = []
    for item in items:
        if "invoice" not in item:
            resolved.append(item)
            continue
        number = item["invoice"]
        try:
            path = await ensure_pdf(settings, number, locale=item.get("locale"))
        except NotFound as exc:
            raise _Permanent(f"invoice {number} does not exist") from exc
        except Exception as exc:
            log.exception("invoice PDF for an e-mail could not be made")
            raise _AttachmentUnavailable(f"invoice {number}: {type(exc).__name__}") from exc
        resolved.append({"path": str(path), "filename": f"{number}.pdf", "type": "application/pdf"})
    return {**row, "attachments": resolved}


def _send(msg: EmailMessage, settings: Settings) -> None:
    if settings.smtp_tls == "ssl":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            settings.smtp_host,
            settings.smtp_port,
            timeout=SMTP_TIMEOUT_S,
            context=ssl.create_default_context(),
        )
    else:
        client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_S)
    with client:
        client.ehlo()
        if settings.smtp_tls == "starttls":
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        if settings.smtp_user:
            client.login(settings.smtp_user, settings.smtp_password)
        try:
            client.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if all(500 <= c < 600 for c in codes):
                raise _Permanent(_reason(exc.recipients)) from exc
            raise
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            if 500 <= exc.smtp_code < 600:
                raise _Permanent(f"{exc.smtp_code} {_decode(exc.smtp_error)}") from exc
            raise


def _decode(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _reason(recipients: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{code} {_decode(text)}" for code, text in recipients.values())


def backoff(attempts: int) -> dt.timedelta:
    return min(BASE_DELAY * (2 ** max(attempts - 1, 0)), MAX_DELAY)


async def deliver_due(settings: Settings, *, limit: int = 100) -> dict[str, int]:
    """Send every queued message whose time has come; return counts for the log."""
    counts = {"sent": 0, "retry": 0, "failed": 0}
    if not settings.smtp_host:
        return counts
    now = clock.now()
    due = (
        await OutboxMessage.select()
        .where((OutboxMessage.status == "queued") & (OutboxMessage.next_attempt_at <= now))
        .order_by(OutboxMessage.created_at)
        .limit(limit)
    )
    for row in due:
        attempts = row["attempts"] + 1
        try:
            row = await resolve_attachments(row, settings)
            msg = build_message(row, settings)
            # The Message-ID stays the same on every attempt: a crash after the server took
            # the message but before the row is marked sent gives at most one duplicate, which
            # mail clients fold by that header.
            _send(msg, settings)
        except _Permanent as exc:
            counts["failed"] += 1
            log.warning("e-mail refused permanently", extra={"outbox_id": str(row["id"])})
            await OutboxMessage.update(
                {
                    OutboxMessage.status: "failed",
                    OutboxMessage.attempts: attempts,
                    OutboxMessage.last_error: str(exc)[:1000],
                }
            ).where(OutboxMessage.id == row["id"])
            continue
        except (TimeoutError, OSError, smtplib.SMTPException, _AttachmentUnavailable) as exc:
            give_up = attempts >= MAX_ATTEMPTS
            counts["failed" if give_up else "retry"] += 1
            log.warning(
                "e-mail delivery failed; will retry"
                if not give_up
                else "e-mail delivery failed; giving up",
                extra={"outbox_id": str(row["id"]), "error": type(exc).__name__},
            )
            await OutboxMessage.update(
                {
                    OutboxMessage.status: "failed" if give_up else "queued",
                    OutboxMessage.attempts: attempts,
                    OutboxMessage.next_attempt_at: clock.now() + backoff(attempts),
                    OutboxMessage.last_error: f"{type(exc).__name__}: {exc}"[:1000],
                }
            ).where(OutboxMessage.id == row["id"])
            # The server is unreachable: the rest would fail the same way. An answer about this
            # message alone (a 4xx for its recipient or its data) does not hold back the others.
            about_this_message = (
                smtplib.SMTPResponseException,
                smtplib.SMTPRecipientsRefused,
                _AttachmentUnavailable,
            )
            if not isinstance(exc, about_this_message):
                break
            continue
        counts["sent"] += 1
        await OutboxMessage.update(
            {
                OutboxMessage.status: "sent",
                OutboxMessage.attempts: attempts,
                OutboxMessage.sent_at: clock.now(),
                OutboxMessage.last_error: "",
            }
        ).where(OutboxMessage.id == row["id"])
    if any(counts.values()):
        log.info("outbox delivery round", extra=counts)
    return counts


async def retry(message_id: Any) -> None:
    """Put a failed message back in the queue (admin's retry)."""
    await OutboxMessage.update(
        {
            OutboxMessage.status: "queued",
            OutboxMessage.next_attempt_at: clock.now(),
            OutboxMessage.attempts: 0,
        }
    ).where((OutboxMessage.id == message_id) & (OutboxMessage.status == "failed"))


async def list_outbox(*, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    query = (
        OutboxMessage.select(
            OutboxMessage.id,
            OutboxMessage.kind,
            OutboxMessage.to_addr,
            OutboxMessage.subject,
            OutboxMessage.status,
            OutboxMessage.attempts,
            OutboxMessage.last_error,
            OutboxMessage.created_at,
            OutboxMessage.sent_at,
        )
        .order_by(OutboxMessage.created_at, ascending=False)
        .limit(limit)
    )
    if status:
        query = query.where(OutboxMessage.status == status)
    return await query


def kick() -> None:
    """Ask the worker to deliver now (after the transaction that queued mail committed)."""
    from appliance.jobs.queue import enqueue_quietly
    from appliance.jobs.tasks import deliver_outbox

    enqueue_quietly(deliver_outbox)
