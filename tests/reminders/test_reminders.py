"""The reminder sender: who it selects, the e-mails a real SMTP server receives, the interval
between two reminders, the background progress."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance import clock, i18n
from appliance.jobs import registry
from appliance.jobs.queue import configure_queue
from appliance.jobs.runner import catch_up, run_job
from appliance.mail.tables import OutboxMessage
from appliance.reminders import service as reminders
from appliance.reminders.tables import Reminder, ReminderBatch
from tests.conftest import run
from tests.helpers import field_error, html, login, make_customer, make_plan, make_staff, post_form

TODAY = dt.date(2026, 3, 10)


def set_today(settings, day: dt.date) -> None:
    clock.reset()
    clock.shift(dt.datetime.combine(day, dt.time(12), tzinfo=settings.tz) - clock.now())


@pytest.fixture
def office(settings):
    """Four customers on 10 March 2026 (cable 100.00, broadband 80.00 a month):
    Ana owes cable Jan-Mar and broadband Mar; Bruno broadband Feb-Mar; Caio (no e-mail) cable
    Feb-Mar; Dora is paid up to December."""
    set_today(settings, TODAY)

    async def seed():
        cable = await make_plan(service="cable", monthly_price="100.00")
        bb = await make_plan(service="broadband", monthly_price="80.00")
        people = {}
        people["ana"] = await make_customer(
            settings,
            name="Ana Lima",
            email="ana@example.com",
            cable_plan=str(cable["id"]),
            cable_registered_on="2026-01-05",
            broadband_plan=str(bb["id"]),
            broadband_registered_on="2026-03-01",
        )
        people["bruno"] = await make_customer(
            settings,
            name="Bruno Reis",
            email="bruno@example.com",
            broadband_plan=str(bb["id"]),
            broadband_registered_on="2026-02-01",
        )
        people["caio"] = await make_customer(
            settings,
            name="Caio Souza",
            mobile="11987654321",
            cable_plan=str(cable["id"]),
            cable_registered_on="2026-02-01",
        )
        people["dora"] = await make_customer(
            settings,
            name="Dora Alves",
            email="dora@example.com",
            cable_plan=str(cable["id"]),
            cable_registered_on="2026-01-01",
            cable_expires_on="2026-12-31",
        )
        return people

    return run(seed())


def _ids(page, table_id: str) -> list[str]:
    return [row["data-customer"] for row in page.select(f"table#{table_id} tbody tr")]


def _money(minor: int) -> str:
    with i18n.use_locale("en"):
        return i18n.money(minor, "BRL")


def test_selection_by_service_due_and_months(client, office):
    login(client, run(make_staff("admin"))["username"])
    ana, bruno, caio = (str(office[k]["id"]) for k in ("ana", "bruno", "caio"))

    page = html(client.get("/reminders", params={"show": "1"}))
    assert _ids(page, "with-email") == [ana, bruno]  # biggest due first; Dora owes nothing
    assert _ids(page, "without-email") == [caio]
    row = page.select_one(f'table#with-email tr[data-customer="{ana}"]')
    assert _money(38000) in row.get_text()
    assert row.select_one("td.months").get_text() == "January 2026, February 2026, March 2026"
    assert row.find("input", attrs={"name": "customer"}).has_attr("checked")
    caio_row = page.select_one("table#without-email tbody tr")
    assert "11987654321" in caio_row.get_text() and _money(20000) in caio_row.get_text()

    page = html(client.get("/reminders", params={"show": "1", "min_months": "3"}))
    assert _ids(page, "with-email") == [ana] and _ids(page, "without-email") == []
    page = html(client.get("/reminders", params={"show": "1", "service": "broadband"}))
    assert _ids(page, "with-email") == [bruno, ana]  # 160.00, then 80.00
    page = html(client.get("/reminders", params={"show": "1", "min_due": "200,00"}))
    assert _ids(page, "with-email") == [ana] and _ids(page, "without-email") == [caio]

    r = client.get("/reminders", params={"show": "1", "min_due": "lots", "min_months": "-1"})
    assert r.status_code == 422
    page = html(r)
    assert field_error(page, "min_due") and field_error(page, "min_months")
    assert page.find("input", attrs={"name": "min_due"})["value"] == "lots"


def _send(client, customers, *, force: bool = False, **filters):
    data = {"service": "", "min_due": "", "min_months": "", **filters}
    data["customer"] = [str(c["id"]) for c in customers]
    if force:
        data["force"] = "1"
    return post_form(client, "/reminders/send", data, page="/reminders?show=1")


def _reminders(mailbox, address: str) -> list:
    """Reminders received (the welcome e-mail with the password goes to the same address)."""
    return [m for m in mailbox.to(address) if "due on your account" in m["Subject"]]


def _results(page) -> dict[str, str]:
    return {r.find("td").get_text(): r["data-status"] for r in page.select("#reminders tbody tr")}


def test_reminders_reach_the_smtp_server_once_per_interval(smtp_client, office, mailbox):
    login(smtp_client, run(make_staff("admin"))["username"])
    ana, bruno, caio = office["ana"], office["bruno"], office["caio"]

    # Bruno is unticked; Caio has no e-mail.
    r = _send(smtp_client, [ana, caio])
    assert r.status_code == 200 and r.url.path.startswith("/reminders/batches/")
    page = html(r)
    assert page.find("progress")["data-percent"] == "100"
    results = _results(page)
    assert results == {ana["crf"]: "sent", caio["crf"]: "no_email"}

    [message] = _reminders(mailbox, "ana@example.com")
    assert not _reminders(mailbox, "bruno@example.com")
    text = mailbox.text(message)
    assert _money(38000) in message["Subject"] and "Test Office" in message["Subject"]
    assert f"{_money(38000)} is due on your account {ana['crf']}" in text
    assert "Cable TV: " + _money(30000) in text
    assert "Months not paid: January 2026, February 2026, March 2026" in text
    assert "Broadband: " + _money(8000) in text
    assert "Months not paid: March 2026" in text

    # Again the same day: skipped, nothing new received.
    page = html(_send(smtp_client, [ana, bruno]))
    statuses = _results(page)
    assert statuses == {ana["crf"]: "recent", bruno["crf"]: "sent"}
    assert len(_reminders(mailbox, "ana@example.com")) == 1
    assert len(_reminders(mailbox, "bruno@example.com")) == 1
    page = html(smtp_client.get("/reminders", params={"show": "1"}))
    assert "recently" in page.select_one(f'tr[data-customer="{ana["id"]}"]').get_text()

    # Unless the admin insists.
    _send(smtp_client, [ana], force=True)
    assert len(_reminders(mailbox, "ana@example.com")) == 2

    # After the interval (7 days), one more reminder is allowed without insisting.
    clock.shift(dt.timedelta(days=7, minutes=1))
    login(smtp_client, run(make_staff("admin"))["username"])
    _send(smtp_client, [ana])
    assert len(_reminders(mailbox, "ana@example.com")) == 3
    sent = run(OutboxMessage.count().where(OutboxMessage.kind == "reminder"))
    assert sent == 4


def test_nothing_chosen_is_refused(client, office):
    login(client, run(make_staff("admin"))["username"])
    r = _send(client, [])
    assert r.status_code == 422
    assert html(r).find(class_="error", role="alert")
    assert run(ReminderBatch.count()) == 0


def test_progress_is_polled_until_the_send_is_done(client, settings, office):
    """With the worker off, the send waits; the page polls the progress fragment until the
    worker has gone through every chunk."""

    async def many():
        plan = await make_plan(service="cable", monthly_price="50.00")
        return [
            await make_customer(
                settings,
                email=f"c{i}@example.com",
                cable_plan=str(plan["id"]),
                cable_registered_on="2026-02-01",
            )
            for i in range(reminders.CHUNK + 5)
        ]

    customers = run(many())
    login(client, run(make_staff("admin"))["username"])
    configure_queue(settings)  # a real queue nobody consumes: the worker is off
    try:
        r = _send(client, customers)
    finally:
        configure_queue(settings, immediate=True)
    batch_url = r.url.path
    progress = html(r).find(id="progress")
    assert progress["hx-get"] == batch_url + "/progress" and "every" in progress["hx-trigger"]
    assert progress.find("progress")["data-percent"] == "0"

    batch = run(reminders.get_batch(batch_url.rsplit("/", 1)[1]))
    run(reminders._send_chunk(settings, batch))  # the worker's first chunk
    fragment = html(client.get(batch_url + "/progress")).find(id="progress")
    done = reminders.CHUNK * 100 // (reminders.CHUNK + 5)
    assert fragment.find("progress")["data-percent"] == str(done)
    assert fragment.has_attr("hx-trigger")

    # The worker starts again: the start-up catch-up finishes the unfinished send.
    outcomes = run(catch_up(settings, trigger="startup"))
    assert outcomes[registry.REMINDERS] == "ok"
    fragment = html(client.get(batch_url + "/progress")).find(id="progress")
    assert fragment.find("progress")["data-percent"] == "100"
    assert not fragment.has_attr("hx-trigger")
    # Each customer got exactly one reminder, across the two runs.
    rows = run(Reminder.select(Reminder.status))
    assert [r["status"] for r in rows] == ["sent"] * (reminders.CHUNK + 5)
    assert run(OutboxMessage.count().where(OutboxMessage.kind == "reminder")) == len(rows)
    assert run(run_job(settings, registry.REMINDERS)).result["batches"] == 0
