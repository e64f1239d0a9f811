"""Secrets never reach the logs: a realistic run (logins, a wrong password, API tokens, a new
customer whose credentials go out by e-mail, a payment, a password change, a password code by
e-mail and its use, the outbox job) with every logger at DEBUG, then each captured record
(message, arguments, extra fields, exception text) and the formatted output searched for every
password, session, CSRF and API token and one-time code that was used."""

from __future__ import annotations

import contextlib
import io
import logging
import re
from collections.abc import Iterator

import pytest

from appliance import clock
from appliance.logs import KeyValueFormatter
from tests.conftest import run
from tests.helpers import csrf_token, html, post_form
from tests.security.world import CUSTOMER_PASSWORD, STAFF_PASSWORD

SESSION = "ctvms_session"


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.stream = io.StringIO()
        self.formatter_ = KeyValueFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.stream.write(self.formatter_.format(record) + "\n")


@pytest.fixture
def captured() -> Iterator[Capture]:
    """The app's own most verbose set-up (``CTVMS_LOG_LEVEL=DEBUG``), every logger enabled, all
    records into one handler."""
    from appliance import logs

    root = logging.getLogger()
    loggers = [root] + [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    saved = {logger: (logger.level, logger.disabled) for logger in loggers}
    handlers = root.handlers[:]
    for logger in loggers:
        logger.setLevel(logging.NOTSET)
        logger.disabled = False
    logs.setup("DEBUG")
    handler = Capture()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.handlers[:] = handlers
        for logger, (level, disabled) in saved.items():
            logger.setLevel(level)
            logger.disabled = disabled


def _outbox(kind: str, to: str) -> str:
    from appliance.mail.tables import OutboxMessage

    rows = run(
        OutboxMessage.select(OutboxMessage.body_text)
        .where((OutboxMessage.kind == kind) & (OutboxMessage.to_addr == to))
        .order_by(OutboxMessage.created_at, ascending=False)
        .limit(1)
    )
    assert rows, (kind, to)
    return rows[0]["body_text"]


def _record_text(record: logging.LogRecord) -> str:
    parts = [str(record.msg), repr(record.args), record.exc_text or ""]
    with contextlib.suppress(TypeError, ValueError):
        parts.append(record.getMessage())
    standard = set(vars(logging.makeLogRecord({})))
    parts += [f"{k}={v!r}" for k, v in vars(record).items() if k not in standard]
    return "\n".join(parts)


def test_a_full_run_logs_no_password_token_or_code(world, web, captured):
    secrets: dict[str, str] = {
        "staff password": STAFF_PASSWORD,
        "customer password": CUSTOMER_PASSWORD,
    }

    # Staff logs in; the session cookie and the CSRF pair are secrets too.
    token = csrf_token(web, "/login")
    secrets["csrf token"] = token
    secrets["csrf cookie"] = web.cookies.get("ctvms_csrf")
    wrong = "Wrong-Guess-Password-913"
    secrets["mistyped password"] = wrong
    web.post("/login", data={"login": "the-admin", "password": wrong, "_csrf_token": token})
    response = web.post(
        "/login",
        data={"login": "the-admin", "password": STAFF_PASSWORD, "_csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    secrets["admin session"] = web.cookies.get(SESSION)

    # API tokens for the admin and for customer A.
    def bearer(login: str, password: str) -> dict[str, str]:
        answer = web.post("/api/v1/auth/token", json={"username": login, "password": password})
        assert answer.status_code == 201, answer.text
        secrets[f"api token of {login}"] = answer.json()["access_token"]
        return {"authorization": f"Bearer {answer.json()['access_token']}"}

    admin = bearer("the-admin", STAFF_PASSWORD)
    customer_a = bearer(world.a.login, CUSTOMER_PASSWORD)
    assert web.get(f"/api/v1/customers/{world.a.id}", headers=customer_a).status_code == 200

    # A new customer: the temporary password goes out by e-mail.
    start = clock.today(world.settings.tz).replace(day=1).isoformat()
    created = web.post(
        "/api/v1/customers",
        headers=admin,
        json={
            "name": "Carla Cunha",
            "mobile": "5511955554444",
            "email": "carla@example.com",
            "house": "7",
            "area": "Centro",
            "cable": {"plan": str(world.plan["id"]), "registered_on": start},
        },
    )
    assert created.status_code == 201, created.text
    welcome = _outbox("credentials", "carla@example.com")
    secrets["temporary password"] = re.search(r"password:\s*(\S+)", welcome, re.I).group(1)

    # A payment through the API, idempotency key and all.
    paid = web.post(
        "/api/v1/payments",
        headers={**admin, "idempotency-key": "log-test-key-0001"},
        json={
            "customer_id": created.json()["id"],
            "amount": "100",
            "mode": "online",
            "reference": "E20261203XYZ",
            "service": "all",
        },
    )
    assert paid.status_code == 201, paid.text

    # Customer A changes the password on the page.
    web.cookies.clear()
    post_form(web, "/login", {"login": world.a.login, "password": CUSTOMER_PASSWORD}, page="/login")
    secrets["customer session"] = web.cookies.get(SESSION)
    changed_to = "Fresh-Customer-Pass-2026"
    secrets["new customer password"] = changed_to
    response = post_form(
        web,
        "/account/password",
        {"current": CUSTOMER_PASSWORD, "new": changed_to, "confirm": changed_to},
    )
    assert response.status_code == 200, html(response).get_text()

    # Forgotten password: a code by e-mail, then used.
    web.cookies.clear()
    asked = post_form(web, "/password/forgot", {"login": world.b.login}, page="/password/forgot")
    assert asked.status_code == 200
    code = re.search(r"^\s*(\d{6})\s*$", _outbox("otp", world.b.customer["email"]), re.M)
    secrets["one-time code"] = code.group(1)
    reset_to = "Reset-By-Code-Pass-77"
    secrets["password set by code"] = reset_to
    done = post_form(
        web,
        "/password/code",
        {"login": world.b.login, "code": code.group(1), "new": reset_to, "confirm": reset_to},
        page="/password/code",
    )
    assert done.status_code == 200, html(done).get_text()

    # The worker's outbox round (no SMTP server configured: it fails and says so).
    from appliance.mail import service as mail

    run(mail.deliver_due(world.settings))

    assert len(captured.records) > 20
    found = []
    output = captured.stream.getvalue()
    [_record_text(r) for r in captured.records] + [output]
    for name, secret in secrets.items():
        assert secret and len(secret) >= 6, name
        pattern = re.compile(rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])")
        hits = [r for r in captured.records if pattern.search(_record_text(r))]
        if hits or pattern.search(output):
            found.append(f"{name} ({sorted({r.name for r in hits})})")
    assert not found, f"in the logs: {found}"
