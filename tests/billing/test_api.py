"""The payments API: recordPayment (with Idempotency-Key), listPayments and reversePayment, and a
4xx JSON answer for every bad input, with nothing recorded."""

from __future__ import annotations

import pytest

from appliance.billing.tables import Payment, PaymentReversal
from appliance.customers import service as customers
from tests.billing.conftest import pay, set_today, subscriber
from tests.conftest import run
from tests.helpers import STAFF_PASSWORD, SYSTEM, customer_password, make_staff


@pytest.fixture
def office(settings, plans):
    """Eva and Fabio each owe January to October 2026 of cable (1,000.00)."""
    set_today(settings, "2026-10-10")

    async def seed():
        eva = await subscriber(settings, plans, cable="2026-01-01", name="Eva Prado")
        fabio = await subscriber(settings, plans, cable="2026-01-01", name="Fabio Reis")
        gone = await subscriber(settings, plans, cable="2026-01-01", name="Gil Removed")
        await customers.archive_customer(gone["id"], actor=SYSTEM)
        return {
            "eva": eva,
            "fabio": fabio,
            "gone": gone,
            "admin": await make_staff("admin"),
            "agent": await make_staff("agent"),
            "eva_password": await customer_password(eva["id"]),
        }

    return run(seed())


def bearer(client, username: str, password: str = STAFF_PASSWORD) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert r.status_code in (200, 201), r.text
    return {"authorization": f"Bearer {r.json()['access_token']}"}


def payments() -> int:
    return run(Payment.count())


def test_staff_record_a_payment_and_a_replayed_key_returns_the_same_one(client, office):
    agent = bearer(client, office["agent"]["username"])
    body = {"customer_id": str(office["eva"]["id"]), "amount": "300", "mode": "cash"}
    headers = {**agent, "Idempotency-Key": "tablet-7-attempt-0001"}
    first = client.post("/api/v1/payments", json=body, headers=headers)
    assert first.status_code == 201, first.text
    paid = first.json()
    assert paid["amount"] == 30000 and paid["mode"] == "cash"
    assert [(x["year"], x["month"]) for x in paid["lines"]] == [(2026, 1), (2026, 2), (2026, 3)]
    assert paid["invoice_url"] == f"/api/v1/invoices/{paid['number']}"
    again = client.post("/api/v1/payments", json=body, headers=headers)
    assert again.status_code == 201 and again.json()["number"] == paid["number"]
    # The key belongs to the first request: a retry that says something else changes nothing.
    changed = client.post("/api/v1/payments", json={**body, "amount": "500"}, headers=headers)
    assert changed.json()["number"] == paid["number"] and changed.json()["amount"] == 30000
    assert payments() == 1
    # Without the key, a second request is a second payment.
    assert client.post("/api/v1/payments", json=body, headers=agent).status_code == 201
    assert payments() == 2


def test_a_key_used_for_another_customer_is_a_conflict(client, office):
    agent = bearer(client, office["agent"]["username"])
    headers = {**agent, "Idempotency-Key": "same-key-for-two"}
    body = {"amount": "300", "mode": "cash"}
    client.post(
        "/api/v1/payments", json={**body, "customer_id": str(office["eva"]["id"])}, headers=headers
    )
    r = client.post(
        "/api/v1/payments",
        json={**body, "customer_id": str(office["fabio"]["id"])},
        headers=headers,
    )
    assert r.status_code == 409 and r.json()["error"] == "conflict"
    assert payments() == 1


def test_every_bad_input_is_a_4xx_naming_the_field_and_records_nothing(client, office, settings):
    run(pay(settings, office["fabio"], "300", mode="online", reference="TAKEN-REF-9"))
    admin = bearer(client, office["admin"]["username"])
    eva = str(office["eva"]["id"])
    base = {"customer_id": eva, "amount": "300", "mode": "cash"}
    cases = [
        ({"amount": "0"}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": "-5"}, "amount"),
        ({"amount": -5}, "amount"),
        ({"amount": "abc"}, "amount"),
        ({"amount": "300.001"}, "amount"),
        ({"amount": 300.001}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": {"value": 3}}, "amount"),
        ({"amount": None}, "amount"),
        ({"amount": "249.99"}, "amount"),
        ({"amount": "1000.01"}, "amount"),
        ({"mode": "online"}, "reference"),
        ({"mode": "online", "reference": "taken-ref-9"}, "reference"),
        ({"mode": "barter"}, "mode"),
        ({"service": "radio"}, "service"),
        ({"service": "broadband"}, "service"),  # Eva has no broadband
        ({"customer_id": "not-a-uuid"}, "customer_id"),
        ({"customer_id": "01900000-0000-7000-8000-000000000009"}, "customer_id"),
        ({"customer_id": str(office["gone"]["id"])}, "customer_id"),
        ({"customer_id": None}, "customer_id"),
    ]
    for change, field in cases:
        r = client.post("/api/v1/payments", json={**base, **change}, headers=admin)
        assert r.status_code == 422, (change, r.status_code, r.text)
        body = r.json()
        assert body["error"] == "invalid" and body["errors"].get(field), (change, body)
    bad_key = {**admin, "Idempotency-Key": "short"}
    r = client.post("/api/v1/payments", json=base, headers=bad_key)
    assert r.status_code == 422 and "idempotency_key" in r.json()["errors"]
    for raw in ("not json", "[1, 2]"):
        r = client.post(
            "/api/v1/payments",
            content=raw,
            headers={**admin, "content-type": "application/json"},
        )
        assert 400 <= r.status_code < 500 and r.json()["error"], raw
    assert payments() == 1  # Fabio's only


def test_a_customer_pays_online_for_themselves_only(client, office):
    eva = bearer(client, office["eva"]["crf"], office["eva_password"])
    cash = client.post("/api/v1/payments", json={"amount": "300", "mode": "cash"}, headers=eva)
    assert cash.status_code == 422 and "online" in cash.json()["errors"]["mode"]
    other = client.post(
        "/api/v1/payments",
        json={
            "customer_id": str(office["fabio"]["id"]),
            "amount": "300",
            "mode": "online",
            "reference": "PIX-FOR-FABIO",
        },
        headers=eva,
    )
    assert other.status_code == 422 and "own account" in other.json()["errors"]["customer_id"]
    assert payments() == 0
    ok = client.post(
        "/api/v1/payments",
        json={"amount": "300", "mode": "online", "reference": "PIX-EVA-0001"},
        headers={**eva, "Idempotency-Key": "eva-phone-000001"},
    )
    assert ok.status_code == 201
    assert ok.json()["received_by"] == "online" and ok.json()["reference"] == "PIX-EVA-0001"


def test_list_payments_by_customer_and_year_a_customer_only_their_own(client, office, settings):
    mine = run(pay(settings, office["eva"], "300"))
    run(pay(settings, office["fabio"], "300"))
    eva = bearer(client, office["eva"]["crf"], office["eva_password"])
    r = client.get("/api/v1/payments", headers=eva)
    assert r.status_code == 200
    body = r.json()
    assert [p["number"] for p in body["payments"]] == [mine["number"]]
    assert body["year"] == 2026 and body["amount_due"] == 70000
    assert [c["state"] for c in body["grid"]["cable"]][:4] == ["paid", "paid", "paid", "unpaid"]
    assert (
        client.get("/api/v1/payments", params={"year": 2025}, headers=eva).json()["payments"] == []
    )
    fabio = {"customer_id": str(office["fabio"]["id"])}
    assert client.get("/api/v1/payments", params=fabio, headers=eva).status_code == 403

    agent = bearer(client, office["agent"]["username"])
    r = client.get("/api/v1/payments", params=fabio, headers=agent)
    assert r.status_code == 200 and len(r.json()["payments"]) == 1
    assert client.get("/api/v1/payments", headers=agent).status_code == 422
    r = client.get("/api/v1/payments", params={**fabio, "year": "20x6"}, headers=agent)
    assert r.status_code == 422 and "year" in r.json()["errors"]
    missing = {"customer_id": "01900000-0000-7000-8000-000000000009"}
    assert client.get("/api/v1/payments", params=missing, headers=agent).status_code == 404


def test_reverse_payment_is_for_admins_with_a_reason(client, office, settings):
    number = run(pay(settings, office["eva"], "300"))["number"]
    url = f"/api/v1/payments/{number}/reversal"
    agent = bearer(client, office["agent"]["username"])
    eva = bearer(client, office["eva"]["crf"], office["eva_password"])
    admin = bearer(client, office["admin"]["username"])
    for who in (agent, eva):
        assert client.post(url, json={"reason": "Not mine to undo"}, headers=who).status_code == 403
    r = client.post(url, json={"reason": ""}, headers=admin)
    assert r.status_code == 422 and "reason" in r.json()["errors"]
    assert client.post(url, json={"reason": 42}, headers=admin).status_code == 400
    unknown = "/api/v1/payments/TS-2026-999999/reversal"
    assert client.post(unknown, json={"reason": "Typo"}, headers=admin).status_code == 404
    assert run(PaymentReversal.count()) == 0

    r = client.post(url, json={"reason": "Counted twice"}, headers=admin)
    assert r.status_code == 200
    assert r.json()["reversed"] is True and r.json()["reversal_reason"] == "Counted twice"
    again = client.post(url, json={"reason": "Counted twice"}, headers=admin)
    assert again.status_code == 409
    assert run(PaymentReversal.count()) == 1 and payments() == 1
