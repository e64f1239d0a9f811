"""Fixtures for tests that drive the real box: a ``ctvms serve`` process and Debian's Chromium.

Put browser tests in this folder (they are marked ``browser``). Fixtures:

- ``live_server``: a migrated office served by a real process on 127.0.0.1, with an admin
  (``admin_username`` / ``admin_password``, no forced password change). If the test also asks
  for ``mail_server``, the office sends its e-mail there and the job worker runs beside it.
- ``live_server_factory(mail=False, worker=None, env=None)``: start one yourself (several
  offices in one test, other settings).
- ``mail_server``: an aiosmtpd server on 127.0.0.1 collecting messages; ``wait_for(...)``.
- ``browser`` (one per run of this package), ``new_context(**options)`` and ``page``: Chromium
  contexts; when the test uses ``live_server`` their ``base_url`` is the server's, so
  ``page.goto("/customers")`` works.

The browser tests are skipped when /usr/bin/chromium is missing, unless ``CI`` is set: then they
fail, so a CI machine without Chromium cannot pass by skipping.
"""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from bench.server import HOST, ServerProcess, free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "browser-admin-pass-2026"
HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]):
    report = yield
    # Kept on the item so the page fixture can take a screenshot of a failing test.
    setattr(item, f"report_{report.when}", report)
    return report


# -- e-mail -----------------------------------------------------------------------------------


@dataclass
class Mailbox:
    """Messages received by the test's SMTP server, parsed."""

    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)

    def wait_for(
        self, predicate: Callable[[EmailMessage], bool] | None = None, *, timeout: float = 20
    ) -> EmailMessage:
        """The first message matching ``predicate``, polling until ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for message in list(self.messages):
                if predicate is None or predicate(message):
                    return message
            if time.monotonic() > deadline:
                subjects = [m["subject"] for m in self.messages]
                raise AssertionError(f"no matching e-mail within {timeout}s; got {subjects}")
            time.sleep(0.05)


class _Collector:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.box.messages.append(message)  # type: ignore[arg-type]
        return "250 OK"


@pytest.fixture
def mail_server() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    box = Mailbox(HOST, free_port())
    controller = Controller(_Collector(box), hostname=HOST, port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


# -- the server -------------------------------------------------------------------------------


@dataclass
class LiveServer:
    """A running office. ``ctvms(...)`` runs a command against the same data folder."""

    process: ServerProcess
    admin_username: str
    admin_password: str
    mailbox: Mailbox | None = None

    @property
    def base_url(self) -> str:
        return self.process.base_url

    @property
    def data_dir(self) -> Path:
        return self.process.data_dir

    @property
    def env(self) -> dict[str, str]:
        return self.process.env

    def url(self, path: str = "/") -> str:
        return self.process.url(path)

    def ctvms(self, *args: str, input: str | None = None, check: bool = True):
        """``ctvms ARGS`` as a CompletedProcess (text); raises on failure when ``check``."""
        return self.process.ctvms(*args, input=input, check=check)


def migrate_with_admin(server: ServerProcess) -> None:
    server.ctvms("migrate")
    server.ctvms(
        "users",
        "create",
        "--role",
        "admin",
        "--username",
        ADMIN_USERNAME,
        input=ADMIN_PASSWORD + "\n",
    )


@pytest.fixture(scope="session")
def office_template(tmp_path_factory) -> Path:
    """A SQLite office migrated, with the admin, once per session; each live server copies it
    (two ``ctvms`` commands fewer per test)."""
    server = ServerProcess(tmp_path_factory.mktemp("office-template"))
    migrate_with_admin(server)
    path = server.data_dir / "ctvms.sqlite3"
    # Fold the WAL into the main file so a plain copy carries everything.
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture
def live_server_factory(tmp_path_factory, request) -> Iterator[Callable[..., LiveServer]]:
    started: list[ServerProcess] = []

    def start(
        *, mail: bool = False, worker: bool | None = None, env: dict[str, str] | None = None
    ) -> LiveServer:
        extra = {"CTVMS_OFFICE_CODE": "TS", "CTVMS_OFFICE_NAME": "Browser Test Office"}
        box = request.getfixturevalue("mail_server") if mail else None
        if box is not None:
            extra.update(
                {
                    "CTVMS_SMTP_HOST": box.host,
                    "CTVMS_SMTP_PORT": str(box.port),
                    "CTVMS_SMTP_TLS": "none",
                    "CTVMS_MAIL_FROM": "office@example.com",
                }
            )
        extra.update(env or {})
        server = ServerProcess(tmp_path_factory.mktemp("office"), env=extra)
        started.append(server)
        if "CTVMS_DATABASE_URL" in extra:
            migrate_with_admin(server)
        else:
            shutil.copy(request.getfixturevalue("office_template"), server.data_dir)
        server.start()
        if worker or (worker is None and mail):
            server.start_worker()
        return LiveServer(server, ADMIN_USERNAME, ADMIN_PASSWORD, box)

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def live_server(live_server_factory, request) -> LiveServer:
    return live_server_factory(mail="mail_server" in request.fixturenames)


# -- the browser ------------------------------------------------------------------------------


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing and CI is set: install Debian's chromium package")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); set CI=1 to make this fail")


# Package scope, not session: Playwright's sync API leaves its event loop marked as running in
# this thread until it stops, which breaks asyncio.run() in every later test of the suite.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()
    finally:
        playwright.stop()


@pytest.fixture
def new_context(browser, request) -> Iterator[Callable[..., Any]]:
    """Open a browser context (a fresh profile); keyword options go to ``new_context``."""
    contexts = []
    base_url = None
    if "live_server" in request.fixturenames:
        base_url = request.getfixturevalue("live_server").base_url

    def make(**options: Any) -> Any:
        options.setdefault("viewport", {"width": 1280, "height": 800})
        options.setdefault("locale", "en-US")
        if base_url:
            options.setdefault("base_url", base_url)
        context = browser.new_context(**options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_context, request, tmp_path) -> Iterator[Any]:
    page = new_context().new_page()
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed and not page.is_closed():
        shot = tmp_path / "failure.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of the failing page: {shot}")
