"""Payments: allocation, the amount rules, bad input, idempotency, reversal, invoice numbers."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance.billing import service as billing
from appliance.billing.tables import Allocation, BillingAccount, Payment, PaymentReversal
from appliance.customers import service as customers
from appliance.customers.tables import Connection
from appliance.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from tests.billing.conftest import (
    AGENT,
    Person,
    customer_actor,
    key,
    pay,
    set_today,
    subscriber,
)
from tests.helpers import SYSTEM, make_staff

pytestmark = pytest.mark.usefixtures("queued")


async def errors_of(coro) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as info:
        await coro
    return info.value.errors


async def expiry(customer, service="cable"):
    return (await customers.get_customer(customer["id"]))["connections"][service]


async def test_a_payment_settles_the_oldest_months_first_across_services(settings, plans):
    set_today(settings, "2026-03-10")
    c = await subscriber(settings, plans, cable="2026-01-01", broadband="2026-02-01")
    # Open: cable Jan, Feb, Mar (100 each), broadband Feb, Mar (80 each): 460.
    p = await pay(settings, c, "290")
    assert [(line["service"], line["month"], line["amount"]) for line in p["lines"]] == [
        ("cable", 1, 10000),
        ("cable", 2, 10000),
        ("broadband", 2, 8000),
        ("cable", 3, 1000),
    ]
    assert p["remaining_due"] == 46000 - 29000 and p["credit"] == 0
    cells = await billing.year_grid(c["id"], 2026)
    assert [x["state"] for x in cells["cable"][:3]] == ["paid", "paid", "partial"]
    assert [x["state"] for x in cells["broadband"][:3]] == ["none", "paid", "unpaid"]
    assert (await expiry(c))["expires_on"] == dt.date(2026, 2, 28)
    assert (await expiry(c, "broadband"))["expires_on"] == dt.date(2026, 2, 28)


async def test_the_payment_returned_is_the_payment_stored(settings, plans):
    set_today(settings, "2026-03-10")
    c = await subscriber(
        settings, plans, cable="2026-01-01", broadband="2026-02-01", email="ana@example.com"
    )
    first = await pay(settings, c, "290")
    second = await pay(settings, c, "80", service="broadband")
    for p in (first, second):
        assert p == await billing.get_payment(p["number"])
    # Cable's March is still open (90 of 100): the rest of the due, after either service.
    assert (second["target"], second["remaining_due"]) == ("broadband", 9000)


async def test_a_payment_bills_the_months_that_began_since_the_worker_last_ran(settings, plans):
    set_today(settings, "2026-11-20")
    c = await subscriber(settings, plans, cable="2026-11-01")
    assert (await billing.account(c["id"]))["due"] == 10000
    # December began, then the year turned; neither monthly billing nor the year updater ran.
    set_today(settings, "2026-12-02")
    p = await pay(settings, c, "200")
    assert [(line["year"], line["month"]) for line in p["lines"]] == [(2026, 11), (2026, 12)]
    set_today(settings, "2027-01-03")
    p = await pay(settings, c, "100")
    assert [(line["year"], line["month"]) for line in p["lines"]] == [(2027, 1)]
    assert p["remaining_due"] == 0 and (await expiry(c))["expires_on"] == dt.date(2027, 1, 31)


async def test_paying_exactly_the_due_clears_it_and_the_connection_becomes_active(settings, plans):
    set_today(settings, "2026-03-31")
    # Nothing paid before February: the expiry is 31 January, 59 days ago (the grace period).
    c = await subscriber(settings, plans, cable="2026-02-20")
    assert (await expiry(c))["status"] == "inactive"
    p = await pay(settings, c, "200,00", actor=AGENT)
    assert p["remaining_due"] == 0 and p["received_by"] == "Field Agent"
    conn = await expiry(c)
    assert (conn["expires_on"], conn["status"]) == (dt.date(2026, 3, 31), "active")
    # Next day a new month is due and the run stops at March.
    set_today(settings, "2026-04-01")
    await billing.bill_month(settings)
    assert (await billing.account(c["id"]))["due"] == 10000


async def test_a_payment_for_one_service_leaves_the_other_alone(settings, plans):
    set_today(settings, "2026-03-10")
    c = await subscriber(settings, plans, cable="2026-01-01", broadband="2026-01-01")
    p = await pay(settings, c, "240", service="broadband")
    assert {line["service"] for line in p["lines"]} == {"broadband"}
    account = await billing.account(c["id"])
    assert account["by_service"] == {"cable": 30000}
    errors = await errors_of(pay(settings, c, "250", service="broadband"))
    assert "Nothing is due" in errors["amount"]


async def test_a_due_below_the_minimum_is_taken_exactly(settings, plans):
    set_today(settings, "2026-03-10")
    c = await subscriber(settings, plans, broadband="2026-03-01")
    errors = await errors_of(pay(settings, c, "50"))
    assert "exactly" in errors["amount"]
    errors = await errors_of(pay(settings, c, "80.01"))
    assert "more than" in errors["amount"]
    p = await pay(settings, c, "80")
    assert p["amount"] == 8000 and p["remaining_due"] == 0


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("0", "more than zero"),
        ("-10", "more than zero"),
        ("abc", "Enter a number"),
        ("", "Enter an amount"),
        ("100.123", "two decimal"),
        ("249.99", "smallest payment"),
        ("1000.01", "more than the amount due"),
    ],
)
async def test_bad_amounts_are_refused_at_the_field_and_nothing_is_recorded(
    settings, plans, amount, message
):
    set_today(settings, "2026-10-10")
    c = await subscriber(settings, plans, cable="2026-01-01")  # 1000.00 due
    errors = await errors_of(pay(settings, c, amount))
    assert message in errors["amount"]
    assert await Payment.count() == 0
    assert (await billing.account(c["id"]))["due"] == 100000


async def test_online_needs_a_reference_unique_in_the_office(settings, plans):
    set_today(settings, "2026-10-10")
    c = await subscriber(settings, plans, cable="2026-01-01")
    other = await subscriber(settings, plans, cable="2026-01-01")
    errors = await errors_of(pay(settings, c, "300", mode="online"))
    assert "reference" in errors
    errors = await errors_of(pay(settings, c, "300", mode="online", reference="ab"))
    assert "4 to 80" in errors["reference"]
    first = await pay(settings, c, "300", mode="online", reference="e2e 123 abc")
    assert first["reference"] == "E2E123ABC"
    errors = await errors_of(pay(settings, other, "300", mode="online", reference="E2E123abc"))
    assert first["number"] in errors["reference"]
    assert await Payment.count() == 1


async def test_a_reversed_payments_reference_can_be_used_again(settings, plans):
    set_today(settings, "2026-10-10")
    c = await subscriber(settings, plans, cable="2026-01-01")
    other = await subscriber(settings, plans, cable="2026-01-01")
    wrong = await pay(settings, c, "300", mode="online", reference="PIX-0001")
    await billing.reverse_payment(
        wrong["number"], "Wrong customer", actor=SYSTEM, settings=settings
    )
    right = await pay(settings, other, "300", mode="online", reference="PIX-0001")
    assert right["reference"] == "PIX-0001"


async def test_bad_mode_service_and_several_mistakes_at_once(settings, plans):
    set_today(settings, "2026-10-10")
    c = await subscriber(settings, plans, cable="2026-01-01")
    errors = await errors_of(
        billing.record_payment(
            c["id"],
            {"amount": "x", "mode": "cheque", "service": "phone"},
            actor=SYSTEM,
            settings=settings,
        )
    )
    assert set(errors) == {"amount", "mode", "service"}
    errors = await errors_of(pay(settings, c, "300", service="broadband"))
    assert "no such connection" in errors["service"]


async def test_unknown_and_removed_customers_cannot_pay(settings, plans):
    set_today(settings, "2026-10-10")
    c = await subscriber(settings, plans, cable="2026-01-01")
    ghost = {"id": "01900000-0000-7000-8000-000000000000"}
    assert "no customer" in (await errors_of(pay(settings, ghost, "300")))["customer"]
    assert "no customer" in (await errors_of(pay(settings, {"id": "junk"}, "300")))["customer"]
    await customers.archive_customer(c["id"], actor=SYSTEM)
    assert "removed" in (await errors_of(pay(settings, c, "300")))["customer"]
    assert await Payment.count() == 0


async def test_a_customer_pays_online_only_and_only_for_themselves(settings, plans):
    set_today(settings, "2026-10-10")
    c = await subscriber(settings, plans, cable="2026-01-01")
    other = await subscriber(settings, plans, cable="2026-01-01")
    me = customer_actor(c)
    errors = await errors_of(pay(settings, c, "300", actor=me, mode="cash"))
    assert "online" in errors["mode"]
    errors = await errors_of(
        pay(settings, other, "300", actor=me, mode="online", reference="X1234")
    )
    assert "own account" in errors["customer"]
    assert await Payment.count() == 0
    p = await pay(settings, c, "300", actor=me, mode="online", reference="X1234")
    assert p["received_by"] == "online" and p["mode"] == "online"


async def test_a_replayed_request_returns_the_first_payment(settings, plans):
    set_today(settings, "2026-10-10")
    c = await subscriber(settings, plans, cable="2026-01-01")
    k = key()
    first = await pay(settings, c, "300", idempotency_key=k)
    again = await pay(settings, c, "300", idempotency_key=k)
    assert again["number"] == first["number"]
    # Even with a different body: the key names the payment.
    again = await pay(settings, c, "500", idempotency_key=k)
    assert again["number"] == first["number"]
    assert await Payment.count() == 1
    # Another user's identical key is another request (keys are kept per user id, so the
    # other user is a real account).
    agent = await make_staff("agent")
    other_user = Person("agent", id=agent["id"], name="Other Agent")
    other = await pay(settings, c, "300", idempotency_key=k, actor=other_user)
    assert other["number"] != first["number"]
    stranger = await subscriber(settings, plans, cable="2026-01-01")
    with pytest.raises(Conflict):
        await pay(settings, stranger, "300", idempotency_key=k)


async def test_a_failed_attempt_does_not_burn_its_key(settings, plans):
    set_today(settings, "2026-10-10")
    c = await subscriber(settings, plans, cable="2026-01-01")
    k = key()
    await errors_of(pay(settings, c, "10", idempotency_key=k))
    p = await pay(settings, c, "300", idempotency_key=k)
    assert p["amount"] == 30000


async def test_invoice_numbers_are_gapless_per_year_and_survive_failures_and_reversals(
    settings, plans
):
    set_today(settings, "2026-12-31", hour=23)
    c = await subscriber(settings, plans, cable="2026-01-01")
    a = await pay(settings, c, "250")
    await errors_of(pay(settings, c, "1"))  # refused: takes no number
    b = await pay(settings, c, "250")
    await billing.reverse_payment(b["number"], "Typed twice", actor=SYSTEM, settings=settings)
    d = await pay(settings, c, "250")
    assert [a["number"], b["number"], d["number"]] == [
        "TS-2026-000001",
        "TS-2026-000002",
        "TS-2026-000003",
    ]
    set_today(settings, "2027-01-01", hour=0)
    e = await pay(settings, c, "250")
    assert e["number"] == "TS-2027-000001"
    assert e["issued_at"].astimezone(settings.tz).date() == dt.date(2027, 1, 1)


async def test_reversal_keeps_both_reopens_the_months_and_moves_the_expiry_back(settings, plans):
    set_today(settings, "2026-03-10")
    c = await subscriber(settings, plans, cable="2026-01-01")
    first = await pay(settings, c, "250")  # Jan, Feb, half of March
    assert (await expiry(c))["expires_on"] == dt.date(2026, 2, 28)
    second = await pay(settings, c, "50")
    conn = await expiry(c)
    assert (conn["expires_on"], conn["status"]) == (dt.date(2026, 3, 31), "active")
    done = await billing.reverse_payment(
        first["number"], "  Cash was counterfeit ", actor=SYSTEM, settings=settings
    )
    assert done["reversed"] and done["reversal_reason"] == "Cash was counterfeit"
    assert await Payment.count() == 2 and await PaymentReversal.count() == 1
    assert await Allocation.count() == 4  # history stays
    account = await billing.account(c["id"])
    assert account["pending_months"] == [(2026, 1), (2026, 2), (2026, 3)]
    assert account["due"] == 25000
    conn = await expiry(c)
    # 31 December is 69 days before 10 March: past the 60-day grace period.
    assert (conn["expires_on"], conn["status"]) == (dt.date(2025, 12, 31), "suspended")
    payments = await billing.list_payments(c["id"], year=2026)
    assert [(p["number"], p["reversed"]) for p in payments] == [
        (first["number"], True),
        (second["number"], False),
    ]
    figures = await billing.month_figures(settings)
    assert figures["received"] == {"cable": 5000}


async def test_reversal_rules(settings, plans):
    set_today(settings, "2026-03-10")
    c = await subscriber(settings, plans, cable="2026-01-01")
    p = await pay(settings, c, "250")
    with pytest.raises(PermissionDenied):
        await billing.reverse_payment(p["number"], "mistake", actor=AGENT, settings=settings)
    with pytest.raises(ValidationFailed) as info:
        await billing.reverse_payment(p["number"], "  ", actor=SYSTEM, settings=settings)
    assert "reason" in info.value.errors
    with pytest.raises(NotFound):
        await billing.reverse_payment("TS-2026-999999", "mistake", actor=SYSTEM, settings=settings)
    await billing.reverse_payment(p["number"], "mistake", actor=SYSTEM, settings=settings)
    with pytest.raises(Conflict):
        await billing.reverse_payment(p["number"], "again", actor=SYSTEM, settings=settings)


async def test_credit_is_used_first_and_restored_by_a_reversal(settings, plans):
    set_today(settings, "2026-03-10")
    c = await subscriber(settings, plans, cable="2026-01-01")
    await BillingAccount(customer=c["id"], credit=4000).save()
    account = await billing.account(c["id"])
    assert (account["open"], account["credit"], account["due"]) == (30000, 4000, 26000)
    errors = await errors_of(pay(settings, c, "300"))
    assert "260" in errors["amount"]
    p = await pay(settings, c, "260")
    assert sum(line["amount"] for line in p["lines"]) == 30000
    assert (p["credit"], p["remaining_due"]) == (0, 0)
    await billing.reverse_payment(p["number"], "bounced", actor=SYSTEM, settings=settings)
    account = await billing.account(c["id"])
    assert (account["credit"], account["due"]) == (4000, 26000)


async def test_reconnected_connection_becomes_active_when_the_month_is_paid(settings, plans):
    set_today(settings, "2026-01-10")
    c = await subscriber(settings, plans, cable="2026-01-01")
    await pay(settings, c, "100")  # January: a due below the minimum is taken exactly
    set_today(settings, "2026-03-05")
    await billing.bill_month(settings)  # February and March billed while still connected
    set_today(settings, "2026-04-05")
    await Connection.update({Connection.status: "suspended"}).where(Connection.customer == c["id"])
    await billing.bill_month(settings)  # April waived: the connection is suspended
    assert (await billing.account(c["id"]))["due"] == 20000
    await billing.reconnect(c["id"], "cable", settings=settings)
    p = await pay(settings, c, "300")
    assert [line["month"] for line in p["lines"]] == [2, 3, 4]
    conn = await expiry(c)
    assert (conn["expires_on"], conn["status"]) == (dt.date(2026, 4, 30), "active")


async def test_invoice_view_is_frozen_at_issue_time(settings, plans):
    set_today(settings, "2026-03-10")
    c = await subscriber(settings, plans, cable="2026-01-01", email="ana@example.com")
    p = await pay(settings, c, "300", mode="online", reference="REF-42")
    await customers.update_customer(
        c["id"],
        {"name": "Renamed Person", "mobile": c["mobile"], "house": "9", "area": "Elsewhere"},
        actor=SYSTEM,
        settings=settings,
        confirm_duplicates=True,
    )
    view = await billing.invoice_view(p["number"])
    assert view["customer"]["name"] == c["name"] and view["customer"]["area"] == "Centro"
    assert view["office"] == {"code": "TS", "name": "Test Office", "address": ""}
    assert view["customer"]["crf"] == c["crf"]
    assert [(line["year"], line["month"], line["amount"]) for line in view["lines"]] == [
        (2026, 1, 10000),
        (2026, 2, 10000),
        (2026, 3, 10000),
    ]
    assert view["lines"][0]["plan_name"] == "Cable 100"
    assert (view["amount_paid"], view["mode"], view["reference"]) == (30000, "online", "REF-42")
    assert (view["received_by"], view["credit"], view["remaining_due"]) == ("test fixture", 0, 0)
    assert view["currency"] == "BRL" and view["issued_at"].tzinfo is not None
    assert (view["reversed"], view["reversal_reason"]) == (False, "")
    with pytest.raises(NotFound):
        await billing.invoice_view("TS-2026-000999")


async def test_the_invoice_email_is_queued_with_the_payment(settings, plans):
    from appliance.mail.tables import OutboxMessage

    set_today(settings, "2026-03-10")
    c = await subscriber(settings, plans, cable="2026-01-01", email="ana@example.com")
    nobody = await subscriber(settings, plans, cable="2026-01-01")
    p = await pay(settings, c, "300")
    await pay(settings, nobody, "300")
    rows = await OutboxMessage.select().where(OutboxMessage.kind == "invoice")
    assert len(rows) == 1 and rows[0]["to_addr"] == "ana@example.com"
    assert p["number"] in rows[0]["body_text"]
    assert "January 2026" in rows[0]["body_text"] or "janeiro" in rows[0]["body_text"].lower()
