"""The application factory: one Litestar app built from explicit settings."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from litestar import Litestar, Router
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import CacheControlHeader, State
from litestar.middleware import DefineMiddleware
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.plugins.htmx import HTMXPlugin
from litestar.static_files import create_static_files_router
from litestar.types import Message
from piccolo.engine.postgres import PostgresEngine

from appliance import db, i18n
from appliance.jobs.queue import configure_queue
from appliance.settings import Settings
from appliance.web.auth import IdentityMiddleware, role_guard
from appliance.web.errors import HANDLERS, api_error_responses
from appliance.web.templating import template_config

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
VERSION = "0.1.0"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'self'; object-src 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


async def _security_headers(message: Message, scope: Any) -> None:
    """Added in ``before_send``, not a middleware: middlewares run per route, and the answers
    of the router itself (no such page, method not allowed) need the headers too."""
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers", []))
    present = {name.lower() for name, _ in headers}
    headers += [h for h in SECURITY_HEADERS if h[0] not in present]
    if not scope["path"].startswith("/static/"):
        headers.append((b"cache-control", b"no-store"))
    message["headers"] = headers


# Each feature's page handlers (``web.py``) and API handlers (``api.py``) export ``ROUTES``.
PAGE_MODULES = [
    "appliance.accounts.web",
    "appliance.accounts.otp_web",
    "appliance.dashboard.web",
    "appliance.customers.web",
    "appliance.plans.web",
    "appliance.invoices.web",
    "appliance.billing.web",
    "appliance.complaints.web",
    "appliance.web.health",
    "appliance.reports.web",
    "appliance.reminders.web",
    "appliance.system.web",
    "appliance.sync.web",
]
API_MODULES = [
    "appliance.accounts.api",
    "appliance.customers.api",
    "appliance.plans.api",
    "appliance.dashboard.api",
    "appliance.invoices.api",
    "appliance.billing.api",
    "appliance.complaints.api",
    "appliance.reports.api",
    "appliance.sync.api",
]


def _routes(modules: list[str]) -> list[Any]:
    return [route for name in modules for route in importlib.import_module(name).ROUTES]


def api_router() -> Router:
    handlers = _routes(API_MODULES)
    # Every operation documents the error answers errors.py gives, besides its own.
    common = api_error_responses()
    for handler in handlers:
        handler.responses = {**common, **(handler.responses or {})}
    return Router(path="/api/v1", route_handlers=handlers)


def page_routes() -> list[Any]:
    return _routes(PAGE_MODULES)


def page_router() -> Router:
    # Pages answer HTML and are not part of the API: the OpenAPI document describes /api only.
    return Router(path="/", route_handlers=page_routes(), include_in_schema=False)


# Connections each web worker process keeps to PostgreSQL (central): workers x hosts x this must
# stay under the server's max_connections (docs/central.md).
PG_POOL_SIZE = 10


def server_app() -> Litestar:
    """The app of one ``ctvms serve --workers N`` process (uvicorn's factory)."""
    return create_app(pg_pool=True)


def create_app(
    settings: Settings | None = None, *, queue: bool = True, pg_pool: bool = False
) -> Litestar:
    """Build the web application. ``queue=False`` leaves the job queue as it is (tests).

    ``pg_pool`` (the server process, ``ctvms serve``): on PostgreSQL, keep a pool of connections
    for the life of the server. Without one, Piccolo opens a new connection for every statement
    outside a transaction (~5 ms each on loopback; a sync pull paid it three times). Tests leave
    it off, since a pool belongs to the event loop that started it."""
    settings = settings or Settings.from_env()
    i18n.set_default_locale(settings.locale)
    engine = db.configure(settings)
    if queue:
        configure_queue(settings)

    async def open_pool() -> None:
        if pg_pool and isinstance(engine, PostgresEngine):
            await engine.start_connection_pool(min_size=1, max_size=PG_POOL_SIZE)

    async def close_pool() -> None:
        if isinstance(engine, db.ApplianceSQLiteEngine):
            await engine.close_idle()
        elif pg_pool and isinstance(engine, PostgresEngine):
            await engine.close_connection_pool()

    static = create_static_files_router(
        path="/static",
        directories=[STATIC_DIR],
        opt={"public": True},
        include_in_schema=False,
        cache_control=CacheControlHeader(max_age=86400),
    )
    return Litestar(
        route_handlers=[static, page_router(), api_router()],
        middleware=[DefineMiddleware(IdentityMiddleware, settings=settings)],
        before_send=[_security_headers],
        guards=[role_guard],
        csrf_config=CSRFConfig(
            secret=settings.secret_key,
            cookie_name="ctvms_csrf",
            cookie_httponly=True,
            cookie_samesite="strict",
            cookie_secure=settings.secure_cookies,
            header_name="x-csrftoken",
            exclude=["/api/", "/static/"],
        ),
        template_config=template_config(settings),
        exception_handlers=HANDLERS,
        plugins=[HTMXPlugin()],
        openapi_config=OpenAPIConfig(
            title="CTVMS",
            version=VERSION,
            path="/schema",
            render_plugins=[JsonRenderPlugin()],
        ),
        state=State({"settings": settings}),
        on_startup=[open_pool],
        on_shutdown=[close_pool],
        debug=False,
    )
