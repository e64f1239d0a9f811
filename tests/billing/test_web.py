"""Billing pages through the in-process client: the admin's payment details, the field agent's
screen, the customer's payments and invoice viewer, and the dashboards' money."""

from __future__ import annotations

import re

import pytest

from appliance.billing import service as billing
from appliance.billing.tables import Payment, PaymentReversal
from tests.billing.conftest import pay, set_today, subscriber
from tests.conftest import run
from tests.helpers import (
    csrf_token,
    customer_password,
    field_error,
    html,
    login,
    make_customer,
    make_staff,
)

TODAY = "2026-10-10"


@pytest.fixture
def office(settings, plans):
    """Carla owes ten cable months (1,000.00) and both services' October; Davi owes
    January to October of cable too. An admin and an agent can log in."""
    set_today(settings, TODAY)

    async def seed():
        carla = await subscriber(
            settings,
            plans,
            cable="2026-01-01",
            name="Carla Nunes",
            mobile="11987650001",
            email="carla@example.com",
        )
        # Davi's mobile holds the digits of Carla's CRF (TS000001): a CRF search must not
        # find him.
        davi = await subscriber(
            settings, plans, cable="2026-01-01", name="Davi Rocha", mobile="11900000001"
        )
        return {
            "carla": carla,
            "davi": davi,
            "admin": await make_staff("admin"),
            "agent": await make_staff("agent"),
            "carla_password": await customer_password(carla["id"]),
            "davi_password": await customer_password(davi["id"]),
        }

    return run(seed())


def payment_form(page, action: str) -> dict[str, str]:
    form = page.find("form", attrs={"action": action})
    assert form is not None, f"no form posting to {action}"
    fields = {}
    for node in form.find_all(["input", "select"]):
        if not node.get("name"):
            continue
        if node.name == "select":
            chosen = node.find("option", selected=True) or node.find("option")
            fields[node["name"]] = chosen["value"]
        else:
            fields[node["name"]] = node.get("value", "")
    return fields


def cells(page, service: str) -> list[str]:
    row = page.find("tr", attrs={"data-service": service})
    return [td["data-state"] for td in row.find_all("td")]


def count(model) -> int:
    return run(model.count())


# -- admin: payment details ---------------------------------------------------------------------


def test_admin_finds_a_customer_by_crf_name_or_mobile(client, office):
    login(client, office["admin"]["username"])
    assert office["carla"]["crf"] == "TS000001"
    for q in (office["carla"]["crf"], "carla nun", "98765-0001"):
        page = html(client.get("/billing", params={"q": q}))
        links = page.select("#pick a")
        assert [a.get_text(" ", strip=True).split(" · ")[0] for a in links] == ["Carla Nunes"], q
        assert links[0]["href"] == f"/billing?customer={office['carla']['id']}"
    # HTMX asks for the results alone while the admin types.
    fragment = client.get("/billing", params={"q": "davi"}, headers={"hx-request": "true"})
    assert "<html" not in fragment.text and "Davi Rocha" in fragment.text


def test_admin_records_cash_and_sees_grid_payments_and_invoice(client, office):
    login(client, office["admin"]["username"])
    cid = office["carla"]["id"]
    page = html(client.get("/billing", params={"customer": str(cid)}))
    assert page.find(attrs={"data-due": True})["data-due"] == "100000"
    assert cells(page, "cable") == ["unpaid"] * 10 + ["scheduled"] * 2
    assert "January 2026" in page.select_one("ul.pending").get_text()

    form = payment_form(page, f"/billing/{cid}/payments")
    assert form["amount"] == "1000.00" and form["idempotency_key"]
    r = client.post(
        f"/billing/{cid}/payments",
        data={**form, "amount": "350", "mode": "cash"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = html(client.get(r.headers["location"]))
    notice = page.find(id="paid-notice").get_text(" ", strip=True)
    number = re.search(r"TS-2026-\d{6}", notice).group(0)
    assert cells(page, "cable")[:4] == ["paid", "paid", "paid", "partial"]
    row = page.find("tr", attrs={"data-number": number})
    assert "January" in row.get_text() and row.find("a")["href"] == f"/invoices/{number}"
    assert page.find(attrs={"data-due": True})["data-due"] == "65000"


def test_a_past_year_can_be_viewed(client, office, settings):
    cid = office["carla"]["id"]
    run(pay(settings, office["carla"], "1000"))
    set_today(settings, "2027-02-03")
    run(billing.bill_month(settings))  # the monthly job
    login(client, office["admin"]["username"])
    page = html(client.get("/billing", params={"customer": str(cid), "year": "2026"}))
    assert cells(page, "cable") == ["paid"] * 10 + ["unpaid"] * 2
    assert page.select("table.payments tr[data-number]")
    years = [a.get_text() for a in page.select("ul.years a")]
    assert years == ["2027", "2026"]
    # A nonsense year falls back to this year instead of failing.
    page = html(client.get("/billing", params={"customer": str(cid), "year": "abc"}))
    assert page.find("table", class_="month-grid")["data-year"] == "2027"


BAD_INPUT = [
    ({"amount": "0"}, "amount", "more than zero"),
    ({"amount": "-10"}, "amount", "more than zero"),
    ({"amount": "ten"}, "amount", "Enter a number"),
    ({"amount": "300.001"}, "amount", "two decimal places"),
    ({"amount": "100"}, "amount", "smallest payment"),
    ({"amount": "1000.01"}, "amount", "more than the amount due"),
    ({"mode": "online", "reference": ""}, "reference", "reference"),
    ({"mode": "online", "reference": "used-ref-1"}, "reference", "already used"),
    ({"mode": "cheque"}, "mode", "cash or online"),
    ({"service": "radio"}, "service", "Choose a service"),
]


def test_bad_input_is_shown_at_the_field_keeping_the_input(client, office, settings):
    run(pay(settings, office["davi"], "300", mode="online", reference="USED-REF-1"))
    login(client, office["admin"]["username"])
    cid = office["carla"]["id"]
    action = f"/billing/{cid}/payments"
    form = payment_form(html(client.get("/billing", params={"customer": str(cid)})), action)
    for data, field, message in BAD_INPUT:
        posted = {**form, "amount": "300", "mode": "cash", **data}
        r = client.post(action, data=posted)
        assert r.status_code == 422, data
        page = html(r)
        assert message in (field_error(page, field) or ""), (data, field_error(page, field))
        assert page.find("input", attrs={"name": "amount"})["value"] == posted["amount"]
        if posted.get("reference"):
            kept = page.find("input", attrs={"name": "reference"})["value"]
            assert kept == posted["reference"]
    assert count(Payment) == 1  # only Davi's


def test_a_double_submitted_form_records_one_payment(client, office):
    login(client, office["admin"]["username"])
    cid = office["carla"]["id"]
    form = payment_form(
        html(client.get("/billing", params={"customer": str(cid)})), f"/billing/{cid}/payments"
    )
    first = client.post(
        f"/billing/{cid}/payments", data={**form, "amount": "300"}, follow_redirects=False
    )
    again = client.post(
        f"/billing/{cid}/payments", data={**form, "amount": "300"}, follow_redirects=False
    )
    assert first.headers["location"] == again.headers["location"]
    assert count(Payment) == 1
    # A fresh rendering of the form has a fresh key, so the next payment is a new one.
    fresh = payment_form(
        html(client.get("/billing", params={"customer": str(cid)})), f"/billing/{cid}/payments"
    )
    assert fresh["idempotency_key"] != form["idempotency_key"]


def test_a_failed_form_keeps_its_key_and_its_retry_records_once(client, office):
    login(client, office["admin"]["username"])
    cid = office["carla"]["id"]
    action = f"/billing/{cid}/payments"
    form = payment_form(html(client.get("/billing", params={"customer": str(cid)})), action)
    failed = html(client.post(action, data={**form, "amount": "1"}))
    retry = payment_form(failed, action)
    assert retry["idempotency_key"] == form["idempotency_key"]
    for _ in range(2):
        client.post(action, data={**retry, "amount": "300"}, follow_redirects=False)
    assert count(Payment) == 1


def test_admin_reverses_a_payment_with_a_reason(client, office, settings):
    payment = run(pay(settings, office["carla"], "300"))
    number = payment["number"]
    login(client, office["admin"]["username"])
    cid = office["carla"]["id"]
    token = csrf_token(client, f"/billing?customer={cid}")
    r = client.post(
        f"/billing/payments/{number}/reverse",
        data={"_csrf_token": token, "reason": "", "year": "2026"},
    )
    assert r.status_code == 422
    assert "Say why" in html(r).find(id=f"e-reason-{number}").get_text()
    assert count(PaymentReversal) == 0

    r = client.post(
        f"/billing/payments/{number}/reverse",
        data={"_csrf_token": token, "reason": "Typed for the wrong customer", "year": "2026"},
    )
    page = html(r)
    row = page.find("tr", attrs={"data-number": number})
    assert "reversed" in row["class"] and "Typed for the wrong customer" in row.get_text()
    assert cells(page, "cable")[:3] == ["unpaid"] * 3
    assert count(Payment) == 1 and count(PaymentReversal) == 1


# -- field agent ----------------------------------------------------------------------------------


def test_agent_finds_the_customer_takes_cash_and_gets_the_invoice_to_print(client, office):
    login(client, office["agent"]["username"])
    assert client.get("/", follow_redirects=False).headers["location"] == "/collect"
    r = client.get("/collect", params={"q": "carla"})
    assert r.headers["content-type"].startswith("text/html")
    page = html(r)
    link = page.select_one("#pick a")["href"]
    page = html(client.get(link))
    cid = office["carla"]["id"]
    assert page.find(attrs={"data-due": True})["data-due"] == "100000"
    form = payment_form(page, f"/collect/{cid}")
    r = client.post(f"/collect/{cid}", data={**form, "amount": "1000"}, follow_redirects=False)
    assert r.status_code == 303
    number = r.headers["location"].rsplit("/", 1)[1]
    receipt = html(client.get(r.headers["location"]))
    hrefs = [a["href"] for a in receipt.select(".actions a")]
    assert f"/invoices/{number}?layout=80mm&autoprint=true" in hrefs
    assert f"/invoices/{number}?layout=58mm&autoprint=true" in hrefs
    assert f"/invoices/{number}/pdf" in hrefs
    assert "carla@example.com" in receipt.find(id="email-note").get_text()
    assert client.get(f"/invoices/{number}?layout=80mm").status_code == 200
    assert run(billing.account(cid))["due"] == 0


def test_agent_errors_stay_on_the_tablet_screen(client, office):
    login(client, office["agent"]["username"])
    cid = office["carla"]["id"]
    form = payment_form(
        html(client.get("/collect", params={"customer": str(cid)})), f"/collect/{cid}"
    )
    r = client.post(f"/collect/{cid}", data={**form, "amount": "5000"})
    assert r.status_code == 422
    assert "more than the amount due" in field_error(html(r), "amount")
    assert count(Payment) == 0


def test_agents_cannot_reach_admin_pages(client, office, settings):
    payment = run(pay(settings, office["carla"], "300"))
    login(client, office["agent"]["username"])
    cid = office["carla"]["id"]
    for path in ("/billing", f"/billing?customer={cid}", "/reports", "/staff", "/customers/new"):
        assert client.get(path).status_code == 403, path
    token = csrf_token(client, "/collect")
    r = client.post(
        f"/billing/payments/{payment['number']}/reverse",
        data={"_csrf_token": token, "reason": "I should not", "year": "2026"},
    )
    assert r.status_code == 403
    assert count(PaymentReversal) == 0
    nav = [a["href"] for a in html(client.get("/collect")).select("header nav a")]
    assert "/collect" in nav and "/billing" not in nav and "/reports" not in nav


# -- the customer ---------------------------------------------------------------------------------


def test_customer_pays_online_with_a_reference_and_sees_the_months_turn_paid(client, office):
    login(client, office["carla"]["crf"], office["carla_password"])
    page = html(client.get("/portal/payments"))
    form = payment_form(page, "/portal/payments")
    assert form["mode"] == "online" and "cash" not in str(page.find("form", class_="pay-form"))
    r = client.post("/portal/payments", data={**form, "amount": "300", "reference": ""})
    assert r.status_code == 422 and field_error(html(r), "reference")
    r = client.post("/portal/payments", data={**form, "amount": "300", "mode": "cash"})
    assert r.status_code == 422
    assert "Customers pay online" in html(r).find(id="e-mode").get_text()
    assert count(Payment) == 0

    r = client.post("/portal/payments", data={**form, "amount": "300", "reference": "PIX-777-ABC"})
    page = html(r)
    assert "300.00" in page.find(id="paid-notice").get_text()
    assert cells(page, "cable")[:3] == ["paid"] * 3


def test_customer_cannot_use_staff_screens_or_pay_for_someone_else(client, office):
    login(client, office["carla"]["crf"], office["carla_password"])
    davi = office["davi"]["id"]
    token = csrf_token(client, "/portal/payments")
    for path in ("/billing", "/collect", f"/collect?customer={davi}"):
        assert client.get(path).status_code == 403, path
    data = {"_csrf_token": token, "amount": "300", "mode": "online", "reference": "PIX-0001"}
    assert client.post(f"/collect/{davi}", data=data).status_code == 403
    assert client.post(f"/billing/{davi}/payments", data=data).status_code == 403
    assert count(Payment) == 0


def test_invoice_viewer_lists_the_months_transactions_and_opens_them(client, office, settings):
    first = run(pay(settings, office["carla"], "300"))
    run(pay(settings, office["davi"], "300"))
    login(client, office["carla"]["crf"], office["carla_password"])
    page = html(client.get("/portal/invoices", params={"year": "2026", "month": "10"}))
    numbers = [tr["data-number"] for tr in page.select("tr[data-number]")]
    assert numbers == [first["number"]]
    link = page.find("a", string=first["number"])["href"]
    assert client.get(link).status_code == 200
    assert (
        client.get(f"/invoices/{first['number']}/pdf").headers["content-type"] == "application/pdf"
    )
    empty = html(client.get("/portal/invoices", params={"year": "2026", "month": "9"}))
    assert not empty.select("tr[data-number]") and "September 2026" in empty.get_text()


# -- dashboards -----------------------------------------------------------------------------------


def test_admin_dashboard_shows_money_received_and_pending_this_month(client, office, settings):
    run(pay(settings, office["carla"], "1000"))
    login(client, office["admin"]["username"])
    page = html(client.get("/"))
    assert page.find(attrs={"data-money": "cable-received"}).get_text() == "R$1,000.00"
    # Davi's October is still open.
    assert page.find(attrs={"data-money": "cable-pending"}).get_text() == "R$100.00"


def test_customer_dashboard_shows_due_and_pending_months_with_their_year(client, office, settings):
    set_today(settings, "2027-01-15")
    run(billing.bill_month(settings))  # the monthly job
    login(client, office["davi"]["crf"], office["davi_password"])  # after the clock moved
    page = html(client.get("/portal"))
    # Davi never paid: his connection is suspended, so the months since are not charged.
    assert page.find(attrs={"data-due": True})["data-due"] == "100000"
    pending = page.select_one(".pending").get_text()
    assert "January 2026" in pending and "October 2026" in pending
    assert "November 2026" not in pending and "2027" not in pending


def test_a_removed_customer_shows_no_payment_form(client, office, settings):
    from appliance.customers import service as customers
    from tests.helpers import SYSTEM

    gone = run(make_customer(settings, name="Gone Away"))
    run(customers.archive_customer(gone["id"], actor=SYSTEM))
    login(client, office["admin"]["username"])
    page = html(client.get("/billing", params={"customer": str(gone["id"])}))
    assert "was removed" in page.get_text()
    assert page.find("form", class_="pay-form") is None
