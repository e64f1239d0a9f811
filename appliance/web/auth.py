"""Who is asking, and may they: session/bearer authentication and the role guard.

Every route declares in its ``opt`` either ``roles`` (who may call it) or ``public=True``. The
guard refuses a route that declares neither, so a forgotten check fails closed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import (
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
)
from litestar.handlers import BaseRouteHandler
from litestar.types import ASGIApp, Receive, Scope, Send

from appliance import clock, i18n
from appliance.accounts import service as accounts
from appliance.data_version import data_version, read_one
from appliance.settings import Settings

SESSION_COOKIE = "ctvms_session"
LANG_COOKIE = "ctvms_lang"

ADMIN = ("owner", "admin")
STAFF = ("owner", "admin", "agent")
ANYONE = ("owner", "admin", "agent", "customer")
CUSTOMER = ("customer",)


def policy_for(settings: Settings) -> accounts.SessionPolicy:
    return accounts.SessionPolicy(
        idle=dt.timedelta(minutes=settings.session_idle_minutes),
        max_age=dt.timedelta(hours=settings.session_max_hours),
    )


def is_api(path: str) -> bool:
    return path.startswith("/api/")


def _cookies(scope: Scope) -> dict[str, str]:
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            result = {}
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                if key:
                    result[key] = val
            return result
    return {}


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", []):
        if name == wanted:
            return value.decode("latin-1")
    return None


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else ""


class ResolvedSessions:
    """Sessions this process resolved lately, so a page need not look its session up again.

    ``accounts.resolve_session`` costs about a millisecond (a Piccolo query with a join, on a
    pooled connection), as much as the rest of a cached dashboard. An identity is taken again
    from here only while the database has not changed at all (:mod:`appliance.data_version`:
    any commit, a logout, a password change that revokes sessions, a deactivated or edited user,
    makes every request look its session up again) and only until the moment the session would
    expire, go idle or be due for its "last seen" touch, read from its row when it was kept,
    and at most :data:`KEEP_SECONDS`. So every answer is the one ``resolve_session`` would give.
    Only on SQLite: PostgreSQL (central) has no data version, and resolves every time.
    """

    KEEP_SECONDS = 5
    MAX_ENTRIES = 256

    def __init__(self, settings: Settings, policy: accounts.SessionPolicy) -> None:
        self.settings = settings
        self.policy = policy
        # (kind, session id) -> (identity, data version, kept at, good until)
        self._kept: dict[tuple[str, str], tuple[Any, Any, dt.datetime, dt.datetime]] = {}

    async def resolve(self, token: str, *, kind: str = "web") -> Any:
        if not token or len(token) > 200:
            return None
        key = (kind, hashlib.sha256(token.encode()).hexdigest())
        version = data_version(self.settings)
        now = clock.now()
        kept = self._kept.get(key)
        # A clock set back makes "kept at" lie in the future: that entry is not used either.
        if kept is not None and version is not None and kept[1] == version:
            identity, _version, at, until = kept
            if at <= now < until:
                return identity
        identity = await accounts.resolve_session(token, policy=self.policy, kind=kind)
        if identity is None or version is None:
            self._kept.pop(key, None)
            return identity
        # The row as committed now, after resolve_session touched it (if it did); the version
        # read before the lookup makes a touch or any other write start over at the next request.
        row = read_one(
            self.settings,
            "SELECT last_seen_at, expires_at FROM sessions WHERE id = ?",
            identity.session_id,
        )
        try:
            last_seen, expires = (dt.datetime.fromisoformat(v) for v in row or ())
            until = min(
                expires,
                last_seen + accounts.TOUCH_EVERY,
                now + dt.timedelta(seconds=self.KEEP_SECONDS),
                *([last_seen + self.policy.idle] if kind == "web" else []),
            )
        except (TypeError, ValueError):
            # No row any more, or times not written as expected: look it up every time.
            return identity
        if len(self._kept) >= self.MAX_ENTRIES:
            self._kept.clear()
        self._kept[key] = (identity, version, now, until)
        return identity


class IdentityMiddleware:
    """Resolve the request's user (cookie session for pages, bearer token for the API) and its
    language, before routing. Static files skip the session lookup entirely."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.policy = policy_for(settings)
        self.sessions = ResolvedSessions(settings, self.policy)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if "\x00" in path:
            # No file or route has a NUL in its name; the static files would fail with a 500.
            raise NotFoundException()
        cookies = _cookies(scope)
        identity = None
        if not path.startswith("/static/"):
            if is_api(path):
                auth = _header(scope, b"authorization") or ""
                scheme, _, token = auth.partition(" ")
                if scheme.lower() == "bearer" and token:
                    identity = await self.sessions.resolve(token.strip(), kind="api")
            elif token := cookies.get(SESSION_COOKIE):
                identity = await self.sessions.resolve(token)
        scope["user"] = identity
        scope["auth"] = cookies.get(SESSION_COOKIE)
        locale = cookies.get(LANG_COOKIE) or i18n.pick_locale(
            _header(scope, b"accept-language"), self.settings.locale
        )
        with i18n.use_locale(locale if locale in i18n.SUPPORTED else self.settings.locale):
            await self.app(scope, receive, send)


class PasswordChangeRequired(PermissionDeniedException):
    """The user has a temporary password and must change it first."""


async def role_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    # A coroutine because Litestar runs a plain function guard in a worker thread: a thread hop
    # on every request for a few dictionary look-ups.
    opt = handler.opt
    path = connection.scope["path"]
    # The OpenAPI document is generated by Litestar's own routes, which carry no opt.
    if opt.get("public") or path == "/schema" or path.startswith("/schema/"):
        return
    roles = opt.get("roles")
    if not roles:
        raise PermissionDeniedException("route declares no roles")
    identity = connection.scope.get("user")
    if identity is None:
        raise NotAuthorizedException(i18n.gettext("Please log in."))
    if identity.must_change_password and not opt.get("allow_password_change"):
        raise PasswordChangeRequired(i18n.gettext("Change your temporary password first."))
    if identity.role not in roles:
        raise PermissionDeniedException(i18n.gettext("You are not allowed to do this."))
