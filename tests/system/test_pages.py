"""The System pages: jobs with their last run and "Run now", the outbox with retry, previews."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance import clock
from appliance.customers.tables import Connection
from appliance.jobs import registry
from appliance.jobs.runner import JOBS, Job, register, run_job
from appliance.mail import service as mail
from appliance.mail.tables import OutboxMessage
from appliance.system.service import template_kinds
from tests.conftest import run
from tests.helpers import html, login, make_customer, make_plan, make_staff, post_form


@pytest.fixture
def admin(client):
    staff = run(make_staff("admin"))
    login(client, staff["username"])
    return client


def _job_rows(page):
    return {row["data-job"]: row for row in page.select("table#jobs tbody tr")}


def test_only_admins_reach_the_system_pages(client):
    agent = run(make_staff("agent"))
    login(client, agent["username"])
    for path in ("/system", "/system/outbox", "/system/mail", "/reminders"):
        assert client.get(path).status_code == 403, path


def test_jobs_page_shows_each_jobs_last_run_and_errors(admin, settings):
    async def broken(settings, today):
        raise RuntimeError("disk full")

    register(Job(name="test-broken-page", func=broken, title=lambda: "B", schedule=lambda: "-"))
    try:
        run(run_job(settings, registry.STATUS_UPDATER, trigger="cli", today=dt.date(2027, 2, 1)))
        run(run_job(settings, "test-broken-page", trigger="cli"))
        page = html(admin.get("/system"))
        rows = _job_rows(page)
        assert set(JOBS) <= set(rows)
        ok = rows[registry.STATUS_UPDATER]
        assert ok.select_one("[data-status]")["data-status"] == "ok"
        assert "today: 2027-02-01" in ok.select_one(".summary").get_text()
        assert ok.select_one("td.num").get_text(strip=True).endswith("s")
        bad = rows["test-broken-page"]
        assert bad.select_one("[data-status]")["data-status"] == "error"
        assert "RuntimeError: disk full" in bad.select_one("pre.error").get_text()
        assert "Never" in rows[registry.BILLING].select_one("td.last-run").get_text()
        # Each job has its own "Run now" form with a CSRF token.
        form = rows[registry.BILLING].find("form")
        assert form["action"] == f"/system/jobs/{registry.BILLING}/run"
        assert form.find("input", attrs={"name": "_csrf_token"})
        # Nothing has released a lock recently: the worker looks absent.
        assert page.find(id="worker-silent")
    finally:
        JOBS.pop("test-broken-page")


def test_run_now_runs_the_status_updater_at_the_moved_clock(client, settings):
    plan = run(make_plan())
    today = clock.today(settings.tz)
    customer = run(
        make_customer(
            settings,
            cable_plan=str(plan["id"]),
            cable_registered_on=(today - dt.timedelta(days=40)).isoformat(),
            cable_expires_on=(today + dt.timedelta(days=5)).isoformat(),
        )
    )
    conn_id = customer["connections"]["cable"]["id"]
    clock.shift(dt.timedelta(days=100))  # 95 days past the paid-up date
    login(client, run(make_staff("admin"))["username"])
    r = post_form(client, f"/system/jobs/{registry.STATUS_UPDATER}/run", {}, page="/system")
    assert r.status_code == 200 and r.url.path == "/system"
    page = html(r)
    assert "Status updater" in page.find(class_="notice", role="status").get_text()
    row = _job_rows(page)[registry.STATUS_UPDATER]
    assert row.select_one("[data-status]")["data-status"] == "ok"
    assert "suspended: 1" in row.select_one(".summary").get_text()
    assert "Run now" in page.select_one("table#runs tbody tr").get_text()
    status = run(Connection.select(Connection.status).where(Connection.id == conn_id))
    assert status[0]["status"] == "suspended"


def test_unknown_job_is_not_found(admin):
    r = post_form(admin, "/system/jobs/nope/run", {}, page="/system")
    assert r.status_code == 404


def test_outbox_shows_the_refusal_and_retry_delivers(smtp_client, smtp_settings, mailbox):
    staff = run(make_staff("admin"))
    login(smtp_client, staff["username"])

    async def queue_two():
        await mail.queue(
            settings=smtp_settings,
            kind="otp",
            to="gone@example.com",
            context={"name": "Ana", "code": "123456", "minutes": 10},
        )
        await mail.queue(
            settings=smtp_settings,
            kind="otp",
            to="fine@example.com",
            context={"name": "Bia", "code": "654321", "minutes": 10},
        )

    mailbox.refuse.add("gone@example.com")
    run(queue_two())
    run(run_job(smtp_settings, registry.OUTBOX, trigger="cli"))
    assert len(mailbox.to("fine@example.com")) == 1 and not mailbox.to("gone@example.com")
    # The every-minute delivery round is the worker's heartbeat.
    assert not html(smtp_client.get("/system")).find(id="worker-silent")

    page = html(smtp_client.get("/system/outbox", params={"status": "failed"}))
    rows = page.select("table#outbox tbody tr")
    assert [r["data-status"] for r in rows] == ["failed"]
    assert "550" in rows[0].select_one("td.reason").get_text()
    assert "mailbox unavailable" in rows[0].select_one("td.reason").get_text()
    counts = {a["data-status"]: a.get_text() for a in page.select("p.filters a[data-status]")}
    assert "(1)" in counts["failed"] and "(1)" in counts["sent"]
    form = rows[0].find("form")

    # The address is fixed on the server side; the admin retries.
    mailbox.refuse.clear()
    r = post_form(smtp_client, form["action"], {}, page="/system/outbox?status=failed")
    assert r.status_code == 200
    assert html(r).find(class_="notice", role="status")
    assert len(mailbox.to("gone@example.com")) == 1
    statuses = run(OutboxMessage.select(OutboxMessage.to_addr, OutboxMessage.status))
    assert {s["to_addr"]: s["status"] for s in statuses} == {
        "gone@example.com": "sent",
        "fine@example.com": "sent",
    }


def test_retry_puts_a_failed_message_back_in_the_queue(admin, settings):
    async def failed_message():
        row = await mail.queue(
            settings=settings,
            kind="otp",
            to="x@example.com",
            context={"name": "X", "code": "111111", "minutes": 10},
        )
        await OutboxMessage.update(
            {OutboxMessage.status: "failed", OutboxMessage.last_error: "550 no such user"}
        ).where(OutboxMessage.id == row["id"])
        return row["id"]

    message_id = run(failed_message())
    # No SMTP server configured here: the retried message waits in the queue.
    r = post_form(admin, f"/system/outbox/{message_id}/retry", {}, page="/system/outbox")
    assert r.status_code == 200
    row = run(OutboxMessage.select().where(OutboxMessage.id == message_id))[0]
    assert row["status"] == "queued" and row["attempts"] == 0
    page = html(admin.get("/system/outbox", params={"status": "queued"}))
    assert [r["data-id"] for r in page.select("table#outbox tbody tr")] == [str(message_id)]


@pytest.mark.parametrize("lang", ["en", "pt_BR"])
def test_every_template_has_a_preview(admin, lang):
    kinds = template_kinds()
    assert {"credentials", "reminder"} <= set(kinds)
    for kind in kinds:
        page = html(admin.get("/system/mail", params={"kind": kind, "lang": lang}))
        preview = page.find(id="preview")
        assert preview["data-kind"] == kind
        assert not preview.find(class_="error"), (kind, preview.get_text())
        assert "Test Office" in preview.select_one("pre.mail-text").get_text()
        assert preview.select_one(".subject").get_text(strip=True)
        frame = preview.find("iframe")
        body = admin.get(frame["src"])
        assert body.status_code == 200
        assert "frame-ancestors 'self'" in body.headers["content-security-policy"]
        assert "Maria da Silva" in html(body).get_text()
