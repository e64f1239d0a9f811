"""Requests as one actor of the seeded office, the way a browser or an API client sends them."""

from __future__ import annotations

from typing import Any

from appliance.web.auth import SESSION_COOKIE
from tests.conftest import run
from tests.helpers import html
from tests.security.matrix import Route
from tests.security.world import World, session_token, user_id_of


class Caller:
    """Sends one request as one actor: a browser session (with a valid CSRF pair) for pages,
    a bearer token for the API. A write gets a fresh session, so a logout or password change
    among the routes does not sign the actor out of the rest of the matrix."""

    def __init__(self, client, world: World, actor: str, *, fresh_sessions: bool = True) -> None:
        self.client = client
        self.world = world
        self.actor = actor
        self.fresh_sessions = fresh_sessions
        client.cookies.clear()
        page = html(client.get("/login"))
        self.csrf_token = page.find("input", attrs={"name": "_csrf_token"})["value"]
        self.csrf_cookie = client.cookies.get("ctvms_csrf")
        self.tokens: dict[str, str] = {}

    def _token(self, kind: str, fresh: bool) -> str:
        if (fresh and self.fresh_sessions) or kind not in self.tokens:
            user = user_id_of(self.world, self.actor)
            self.tokens[kind] = run(session_token(self.world.settings, user, kind=kind))
        return self.tokens[kind]

    def sign_in(self) -> None:
        """Open the page session and the API token now rather than at the first request."""
        self._token("web", False)
        self._token("api", False)

    def send(
        self,
        route: Route,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
        csrf: tuple[str | None, str | None] | None = None,
    ):
        """``csrf`` replaces the (cookie, token) pair a page request carries; None leaves it
        out of the request."""
        client = self.client
        cookie, token = csrf or (self.csrf_cookie, self.csrf_token)
        client.cookies.clear()
        if cookie is not None:
            client.cookies.set("ctvms_csrf", cookie)
        headers = {}
        signed_in = self.actor != "anonymous"
        if route.is_api:
            if signed_in:
                bearer = self._token("api", route.is_write)
                headers["authorization"] = f"Bearer {bearer}"
        elif signed_in:
            client.cookies.set(SESSION_COOKIE, self._token("web", route.is_write))
        kwargs: dict[str, Any] = {"headers": headers, "params": query, "follow_redirects": False}
        if route.is_write:
            if route.is_api:
                kwargs["json"] = body or {}
            else:
                kwargs["data"] = dict(body or {})
                if token is not None:
                    headers["x-csrftoken"] = token
                    kwargs["data"]["_csrf_token"] = token
        return client.request(route.method, path, **kwargs)
