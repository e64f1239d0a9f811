"""Password change by a one-time code sent by e-mail, for a forgotten or a current password.

A code is six digits from :mod:`secrets`; only an HMAC of it (keyed by the office's secret key)
is stored. It is valid for :data:`CODE_LIFETIME` from sending, allows :data:`MAX_ATTEMPTS` wrong
entries, and a newer code replaces every older one. Asking for a code by login name answers the
same way whether or not the account exists: the per-account limit is silent, and only the
per-address limits, which apply to every login alike, are shown.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
from typing import Any

from appliance import clock, i18n
from appliance.accounts import service as accounts
from appliance.accounts.otp_tables import OneTimeCode, OtpEvent
from appliance.accounts.passwords import password_problem
from appliance.accounts.tables import User
from appliance.db import write_transaction
from appliance.errors import RateLimited, ValidationFailed
from appliance.i18n import gettext as _
from appliance.mail import service as mail
from appliance.settings import Settings

log = logging.getLogger(__name__)

CODE_DIGITS = 6
CODE_LIFETIME = dt.timedelta(minutes=10)
MAX_ATTEMPTS = 5
# One account gets at most this many codes per window; more requests are silently dropped.
CODES_PER_ACCOUNT = 3
ACCOUNT_WINDOW = dt.timedelta(minutes=15)
# One client address may ask this many times per window, for any logins, known or not.
REQUESTS_PER_ADDRESS = 10
ADDRESS_WINDOW = dt.timedelta(hours=1)
# Wrong codes from one address, across every account, before it is refused for a while.
FAILURES_PER_ADDRESS = 20
FAILURE_WINDOW = dt.timedelta(minutes=15)
# Address events older than this serve no limit any more.
EVENT_RETENTION = dt.timedelta(days=1)


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def code_hash(settings: Settings, code_id: Any, code: str) -> str:
    key = settings.secret_key.encode()
    return hmac.new(key, f"{code_id}:{code}".encode(), hashlib.sha256).hexdigest()


def _invalid_code() -> ValidationFailed:
    # One message for a wrong, expired, used-up or unknown code, whatever the account.
    return ValidationFailed(
        {
            "code": _(
                "This code is not valid. A code works for %(minutes)s minutes and allows "
                "%(tries)s tries; after that, ask for a new one.",
                minutes=int(CODE_LIFETIME.total_seconds() // 60),
                tries=MAX_ATTEMPTS,
            )
        }
    )


async def _address_events(address: str, kind: str, window: dt.timedelta) -> int:
    return await OtpEvent.count().where(
        (OtpEvent.address == address)
        & (OtpEvent.kind == kind)
        & (OtpEvent.at > clock.now() - window)
    )


async def _recipient(user: dict[str, Any]) -> tuple[str, str]:
    """(e-mail address, name to greet) of an account; the address is "" when it has none."""
    if user["role"] != "customer":
        return (user["email"] or "").strip(), user["username"] or ""
    from appliance.customers.tables import Customer

    rows = await Customer.select(Customer.email, Customer.name, Customer.archived_at).where(
        Customer.id == user["customer"]
    )
    if not rows or rows[0]["archived_at"]:
        return "", ""
    return (rows[0]["email"] or "").strip(), rows[0]["name"]


def _context(name: str, code: str) -> dict[str, Any]:
    return {"name": name, "code": code, "minutes": int(CODE_LIFETIME.total_seconds() // 60)}


async def _issue(
    settings: Settings, user: dict[str, Any], *, to: str, name: str, address: str
) -> bool:
    """Replace the account's codes by a new one and queue it; False when the account already
    had its share of codes in the window."""
    now = clock.now()
    async with write_transaction():
        recent = await OneTimeCode.count().where(
            (OneTimeCode.user == user["id"]) & (OneTimeCode.sent_at > now - ACCOUNT_WINDOW)
        )
        if recent >= CODES_PER_ACCOUNT:
            log.warning("password code not sent: account limit", extra={"user_id": str(user["id"])})
            return False
        await OneTimeCode.update({OneTimeCode.used_at: now}).where(
            (OneTimeCode.user == user["id"]) & OneTimeCode.used_at.is_null()
        )
        code = new_code()
        row = OneTimeCode(
            user=user["id"], sent_at=now, expires_at=now + CODE_LIFETIME, address=address[:64]
        )
        row.code_hash = code_hash(settings, row.id, code)
        await row.save()
        await mail.queue(
            settings=settings,
            kind="otp",
            to=to,
            context=_context(name, code),
            locale=i18n.current_locale(),
        )
    log.info("password code sent", extra={"user_id": str(user["id"])})
    mail.kick()
    return True


async def _count_request(address: str) -> None:
    """Record a request from ``address``, refusing it when the address asked too often."""
    async with write_transaction():
        if await _address_events(address, "request", ADDRESS_WINDOW) >= REQUESTS_PER_ADDRESS:
            log.warning("password code refused: too many requests from one address")
            raise RateLimited(_("Too many code requests from this device. Try again later."))
        now = clock.now()
        await OtpEvent.delete().where(OtpEvent.at < now - EVENT_RETENTION)
        await OtpEvent(address=address[:64], kind="request", at=now).save()


async def request_code(settings: Settings, login: str, *, address: str) -> None:
    """Send a code to the account behind ``login`` (staff username, customer number or e-mail).

    Returns the same way, after the same kind of work, whether the account exists or not; only
    the per-address limit raises :class:`RateLimited`.
    """
    if not login.strip():
        raise ValidationFailed({"login": _("Enter your username, customer number or e-mail.")})
    await _count_request(address)
    user = await accounts._find_login(login)
    to, name = await _recipient(user) if user and user["is_active"] else ("", "")
    if not to:
        # Render the message all the same, so an unknown login costs about what a known one does.
        mail.render(
            "otp",
            {"office_name": settings.office_name, **_context("", new_code())},
            locale=i18n.current_locale(),
        )
        log.info("password code asked for a login with no account or no e-mail")
        return
    await _issue(settings, user, to=to, name=name, address=address)


async def request_code_for_user(settings: Settings, user_id: Any, *, address: str) -> None:
    """Send a code to a logged-in user, who may not remember the current password."""
    await _count_request(address)
    rows = await User.select(*User.all_columns()).where(User.id == user_id)
    to, name = await _recipient(rows[0]) if rows else ("", "")
    if not to:
        raise ValidationFailed(
            {"": _("Your account has no e-mail address. Ask the office to change the password.")}
        )
    await _issue(settings, rows[0], to=to, name=name, address=address)


def _check_new_password(new: str, confirm: str) -> None:
    if problem := password_problem(new):
        raise ValidationFailed({"new": problem})
    if new != confirm:
        raise ValidationFailed({"confirm": _("The two new passwords differ.")})


async def _redeem(
    settings: Settings,
    user: dict[str, Any] | None,
    code: str,
    new: str,
    *,
    address: str,
    keep_session: str | None,
) -> None:
    code = code.strip().replace(" ", "")
    async with write_transaction():
        if await _address_events(address, "failure", FAILURE_WINDOW) >= FAILURES_PER_ADDRESS:
            log.warning("password code refused: too many wrong codes from one address")
            raise RateLimited(_("Too many wrong codes from this device. Try again later."))
        now = clock.now()
        rows = []
        if user and user["is_active"]:
            rows = (
                await OneTimeCode.select()
                .where((OneTimeCode.user == user["id"]) & OneTimeCode.used_at.is_null())
                .order_by(OneTimeCode.sent_at, ascending=False)
                .limit(1)
            )
        row = rows[0] if rows else None
        usable = row is not None and row["expires_at"] > now and row["attempts"] < MAX_ATTEMPTS
        well_formed = len(code) == CODE_DIGITS and code.isdigit()
        expected = code_hash(settings, row["id"] if row else "", code)
        matches = usable and well_formed and hmac.compare_digest(expected, row["code_hash"])
        if not matches:
            await OtpEvent(address=address[:64], kind="failure", at=now).save()
            if usable:
                await OneTimeCode.update({OneTimeCode.attempts: OneTimeCode.attempts + 1}).where(
                    OneTimeCode.id == row["id"]
                )
    # Raised outside the transaction so the failure and the attempt are committed.
    if not matches:
        log.info("wrong or unusable password code")
        raise _invalid_code()
    async with write_transaction():
        used = (
            await OneTimeCode.update({OneTimeCode.used_at: clock.now()})
            .where((OneTimeCode.id == row["id"]) & OneTimeCode.used_at.is_null())
            .returning(OneTimeCode.id)
        )
        if not used:  # redeemed by a concurrent request a moment ago
            raise _invalid_code()
        await accounts.set_password(user["id"], new, keep_session=keep_session)
    log.info("password changed with an e-mailed code", extra={"user_id": str(user["id"])})


async def reset_with_code(
    settings: Settings, *, login: str, code: str, new: str, confirm: str, address: str
) -> None:
    """Forgotten password: set ``new`` if ``code`` is the account's live code; every session
    of the account ends."""
    _check_new_password(new, confirm)
    user = await accounts._find_login(login) if login.strip() else None
    await _redeem(settings, user, code, new, address=address, keep_session=None)


async def change_with_code(
    settings: Settings,
    user_id: Any,
    *,
    code: str,
    new: str,
    confirm: str,
    address: str,
    keep_session: str | None,
) -> None:
    """A logged-in user's change by code: every session but ``keep_session`` (hashed id) ends."""
    _check_new_password(new, confirm)
    rows = await User.select(*User.all_columns()).where(User.id == user_id)
    await _redeem(
        settings, rows[0] if rows else None, code, new, address=address, keep_session=keep_session
    )
