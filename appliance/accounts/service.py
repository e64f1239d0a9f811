"""Accounts: staff and customer logins, sessions, lockout and password changes."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Any

from appliance import clock
from appliance.accounts.passwords import (
    hash_password,
    password_problem,
    temporary_password,
    verify_password,
)
from appliance.accounts.tables import ROLES, STAFF_ROLES, LoginFailure, Session, User
from appliance.db import write_transaction
from appliance.errors import (
    AuthenticationFailed,
    NotFound,
    RateLimited,
    ValidationFailed,
    storage_trouble,
)
from appliance.i18n import gettext as _

log = logging.getLogger(__name__)

MAX_FAILED_LOGINS = 5
LOCKOUT = dt.timedelta(minutes=15)
ADDRESS_WINDOW = dt.timedelta(minutes=15)
MAX_FAILURES_PER_ADDRESS = 20
API_TOKEN_LIFETIME = dt.timedelta(days=30)
# Refresh last_seen at most this often, so an active session does not write on every request.
TOUCH_EVERY = dt.timedelta(seconds=60)


@dataclass(frozen=True)
class SessionPolicy:
    idle: dt.timedelta
    max_age: dt.timedelta


@dataclass
class Identity:
    """The user behind a request, with the session that authenticated it."""

    user: dict[str, Any]
    session_id: str

    @property
    def id(self):
        return self.user["id"]

    @property
    def role(self) -> str:
        return self.user["role"]

    @property
    def customer_id(self):
        return self.user["customer"]

    @property
    def must_change_password(self) -> bool:
        return bool(self.user["must_change_password"])

    @property
    def display_name(self) -> str:
        return self.user.get("display_name") or self.user["username"] or ""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- staff --------------------------------------------------------------------------------------


def username_problem(username: str) -> str | None:
    if not (3 <= len(username) <= 150):
        return _("A username has 3 to 150 characters.")
    if not all(c.isalnum() or c in "._-" for c in username):
        return _("Use letters, digits, dots, dashes or underscores only.")
    return None


async def create_staff(
    *, username: str, role: str, password: str, must_change_password: bool = False
) -> dict[str, Any]:
    username = username.strip().lower()
    errors = {}
    if role not in STAFF_ROLES:
        errors["role"] = _("Choose owner, admin or agent.")
    if problem := username_problem(username):
        errors["username"] = problem
    if problem := password_problem(password):
        errors["password"] = problem
    if errors:
        raise ValidationFailed(errors)
    async with write_transaction():
        if await User.exists().where(User.username == username):
            raise ValidationFailed({"username": _("This username is taken.")})
        row = User(
            username=username,
            role=role,
            password_hash=hash_password(password),
            must_change_password=must_change_password,
        )
        await row.save()
    log.info("staff account created", extra={"user_id": str(row.id), "role": role})
    return row.to_dict()


async def ensure_first_admin() -> tuple[str, str] | None:
    """Create the first admin when no staff account exists; return (username, password)."""
    if await User.exists().where(User.role.is_in(list(STAFF_ROLES))):
        return None
    password = temporary_password(14)
    await create_staff(username="admin", role="admin", password=password, must_change_password=True)
    return "admin", password


# -- customers' logins --------------------------------------------------------------------------


async def create_customer_login(customer_id: Any) -> str:
    """Create the login of a new customer (inside the caller's transaction); return the
    temporary password, which must be changed at first login."""
    password = temporary_password()
    await User(
        role="customer",
        customer=customer_id,
        password_hash=hash_password(password),
        must_change_password=True,
    ).save()
    return password


async def set_customer_login_active(customer_id: Any, active: bool) -> None:
    await User.update({User.is_active: active}).where(User.customer == customer_id)
    if not active:
        ids = await User.select(User.id).where(User.customer == customer_id)
        for row in ids:
            await Session.delete().where(Session.user == row["id"])


# -- logging in ---------------------------------------------------------------------------------


async def _find_login(login: str) -> dict[str, Any] | None:
    from appliance.customers.tables import Customer

    login = login.strip()
    if not login:
        return None
    rows = await User.select(*User.all_columns()).where(User.username == login.lower()).limit(1)
    if rows:
        return rows[0]
    # An archived customer keeps their e-mail on record; it must not make the address
    # ambiguous for the current customer who uses it now.
    customer = (
        await Customer.select(Customer.id)
        .where(
            (Customer.crf == login.upper())
            | ((Customer.email == login.lower()) & Customer.archived_at.is_null())
        )
        .limit(2)
    )
    if len(customer) != 1:
        return None
    rows = await User.select(*User.all_columns()).where(User.customer == customer[0]["id"])
    return rows[0] if rows else None


async def authenticate(login: str, password: str, *, address: str) -> dict[str, Any]:
    """Check a login; raise AuthenticationFailed or RateLimited with a message safe to show."""
    now = clock.now()
    recent = await LoginFailure.count().where(
        (LoginFailure.address == address) & (LoginFailure.at > now - ADDRESS_WINDOW)
    )
    if recent >= MAX_FAILURES_PER_ADDRESS:
        log.warning("login refused: too many failures from one address")
        raise RateLimited(_("Too many failed logins from this device. Try again later."))
    user = await _find_login(login)
    ok = verify_password(user["password_hash"] if user else None, password)
    if user and user["locked_until"] and user["locked_until"] > now:
        log.warning("login refused: account locked", extra={"user_id": str(user["id"])})
        raise RateLimited(
            _(
                "This account is locked after too many failed logins. Try again "
                "later or ask the office to unlock it."
            )
        )
    if not (user and ok and user["is_active"]):
        async with write_transaction():
            await LoginFailure(address=address, at=now).save()
            if user:
                failures = user["failed_logins"] + 1
                values: dict[Any, Any] = {User.failed_logins: failures}
                if failures >= MAX_FAILED_LOGINS:
                    values[User.locked_until] = now + LOCKOUT
                    log.warning("account locked", extra={"user_id": str(user["id"])})
                await User.update(values).where(User.id == user["id"])
        raise AuthenticationFailed(_("Wrong login or password."))
    if user["failed_logins"] or user["locked_until"]:
        await User.update({User.failed_logins: 0, User.locked_until: None}).where(
            User.id == user["id"]
        )
    return user


async def unlock(user_id: Any) -> None:
    updated = (
        await User.update({User.failed_logins: 0, User.locked_until: None})
        .where(User.id == user_id)
        .returning(User.id)
    )
    if not updated:
        raise NotFound(_("No such account."))
    log.info("account unlocked", extra={"user_id": str(user_id)})


# -- sessions -----------------------------------------------------------------------------------


async def start_session(
    user_id: Any, *, policy: SessionPolicy, address: str = "", kind: str = "web"
) -> str:
    """Create a session and return its secret (the cookie value or bearer token)."""
    token = secrets.token_urlsafe(32)
    now = clock.now()
    lifetime = API_TOKEN_LIFETIME if kind == "api" else policy.max_age
    await Session(
        id=_digest(token),
        user=user_id,
        kind=kind,
        created_at=now,
        last_seen_at=now,
        expires_at=now + lifetime,
        address=address[:64],
    ).save()
    return token


async def resolve_session(
    token: str, *, policy: SessionPolicy, kind: str = "web"
) -> Identity | None:
    """The identity behind a session secret, or None when unknown, expired or idle too long."""
    if not token or len(token) > 200:
        return None
    sid = _digest(token)
    rows = (
        await Session.select(
            Session.id,
            Session.last_seen_at,
            Session.expires_at,
            Session.kind,
            *Session.user.all_columns(exclude=[Session.user.password_hash]),
        )
        .where(Session.id == sid)
        .output(nested=True)
    )
    if not rows:
        return None
    row = rows[0]
    now = clock.now()
    idle_limit = row["last_seen_at"] + policy.idle
    if (
        row["kind"] != kind
        or row["expires_at"] <= now
        or (kind == "web" and idle_limit <= now)
        or not row["user"]["is_active"]
    ):
        await Session.delete().where(Session.id == sid)
        return None
    if now - row["last_seen_at"] > TOUCH_EVERY:
        try:
            await Session.update({Session.last_seen_at: now}).where(Session.id == sid)
        except sqlite3.Error as exc:
            # A full or read-only disk must not log anyone out of reading: the touch waits.
            if storage_trouble(exc) is None:
                raise
            log.warning("session not touched: storage %s", storage_trouble(exc))
    user = row["user"]
    if user["role"] == "customer" and user["customer"]:
        from appliance.customers.tables import Customer

        names = await Customer.select(Customer.name, Customer.crf).where(
            Customer.id == user["customer"]
        )
        if names:
            user["display_name"] = names[0]["name"]
            user["crf"] = names[0]["crf"]
    return Identity(user=user, session_id=sid)


async def end_session(token_or_id: str, *, hashed: bool = False) -> None:
    sid = token_or_id if hashed else _digest(token_or_id)
    await Session.delete().where(Session.id == sid)


# -- passwords ----------------------------------------------------------------------------------


async def change_password(
    user_id: Any, *, current: str, new: str, confirm: str, keep_session: str | None = None
) -> None:
    """Change a password knowing the current one; every other session of the user ends."""
    rows = await User.select(User.password_hash).where(User.id == user_id)
    if not rows:
        raise NotFound(_("No such account."))
    errors = {}
    if not verify_password(rows[0]["password_hash"], current):
        errors["current"] = _("This is not your current password.")
    if problem := password_problem(new):
        errors["new"] = problem
    elif new != confirm:
        errors["confirm"] = _("The two new passwords differ.")
    elif new == current:
        errors["new"] = _("Choose a password different from the current one.")
    if errors:
        raise ValidationFailed(errors)
    await set_password(user_id, new, keep_session=keep_session)


async def set_password(
    user_id: Any, new: str, *, keep_session: str | None = None, must_change: bool = False
) -> None:
    """Store a new password and revoke every session but ``keep_session`` (a hashed id)."""
    async with write_transaction():
        await User.update(
            {
                User.password_hash: hash_password(new),
                User.must_change_password: must_change,
                User.password_changed_at: clock.now(),
                User.failed_logins: 0,
                User.locked_until: None,
            }
        ).where(User.id == user_id)
        revoke = Session.delete().where(Session.user == user_id)
        if keep_session:
            revoke = Session.delete().where(
                (Session.user == user_id) & (Session.id != keep_session)
            )
        await revoke
    log.info("password changed; other sessions revoked", extra={"user_id": str(user_id)})


async def list_staff() -> list[dict[str, Any]]:
    return (
        await User.select(
            User.id,
            User.username,
            User.role,
            User.is_active,
            User.locked_until,
            User.failed_logins,
            User.created_at,
        )
        .where(User.role.is_in(list(STAFF_ROLES)))
        .order_by(User.username)
    )


def is_role(value: str) -> bool:
    return value in ROLES
