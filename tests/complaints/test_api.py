"""Complaints API: raiseComplaint, listComplaints, getComplaint, resolveComplaint."""

from __future__ import annotations

from appliance.mail import service as mail
from tests.complaints.mailbox import Mailbox
from tests.conftest import run
from tests.helpers import STAFF_PASSWORD, customer_password, make_customer, make_staff


def _token(client, login: str, password: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", json={"username": login, "password": password})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _customer_token(settings, client, **overrides):
    row = run(make_customer(settings, **overrides))
    return row, _token(client, row["crf"], run(customer_password(row["id"])))


def _staff_token(client, role: str = "admin"):
    staff = run(make_staff(role))
    return _token(client, staff["username"], STAFF_PASSWORD)


def test_customer_raises_and_lists_only_their_own(settings, client):
    ana, ana_auth = _customer_token(settings, client)
    bob, bob_auth = _customer_token(settings, client)
    r = client.post(
        "/api/v1/complaints",
        json={"category": "broadband_down", "message": "No internet since 9 am"},
        headers=ana_auth,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["number"] == "TS-C-000001"
    assert body["customer_id"] == str(ana["id"]) and body["crf"] == ana["crf"]
    assert [e["kind"] for e in body["events"]] == ["raised"]
    client.post(
        "/api/v1/complaints", json={"category": "other", "message": "Bob's own"}, headers=bob_auth
    )

    mine = client.get("/api/v1/complaints", headers=ana_auth).json()
    assert [c["number"] for c in mine["items"]] == ["TS-C-000001"] and mine["total"] == 1
    # Asking for someone else's list still answers with one's own.
    r = client.get("/api/v1/complaints", params={"customer_id": str(bob["id"])}, headers=ana_auth)
    assert [c["number"] for c in r.json()["items"]] == ["TS-C-000001"]
    bobs = client.get("/api/v1/complaints", headers=bob_auth).json()["items"]
    assert [c["number"] for c in bobs] == ["TS-C-000002"]

    assert client.get(f"/api/v1/complaints/{body['id']}", headers=bob_auth).status_code == 404
    assert client.get(f"/api/v1/complaints/{body['id']}", headers=ana_auth).status_code == 200
    # Raising for another customer, or resolving, is refused.
    r = client.post(
        "/api/v1/complaints",
        json={"category": "other", "message": "In Ana's name", "customer_id": str(ana["id"])},
        headers=bob_auth,
    )
    assert r.status_code == 403
    r = client.post(
        f"/api/v1/complaints/{body['id']}/resolve", json={"resolution": "Nope"}, headers=bob_auth
    )
    assert r.status_code == 403


def test_staff_raise_on_behalf_and_the_admin_resolves(
    settings, smtp_settings, mailbox: Mailbox, client
):
    ana = run(make_customer(settings, email="ana@example.com"))
    agent = _staff_token(client, "agent")
    admin = _staff_token(client, "admin")
    r = client.post(
        "/api/v1/complaints",
        json={"category": "no_signal", "message": "Told me at the door"},
        headers=agent,
    )
    assert r.status_code == 422 and "customer_id" in r.json()["errors"]
    r = client.post(
        "/api/v1/complaints",
        json={"category": "no_signal", "message": "Told me at the door", "crf": ana["crf"]},
        headers=agent,
    )
    assert r.status_code == 201
    complaint = r.json()
    r = client.post(
        "/api/v1/complaints",
        json={"category": "nonsense", "message": "x", "customer_id": str(ana["id"])},
        headers=admin,
    )
    assert r.status_code == 422 and set(r.json()["errors"]) == {"category", "message"}

    # Field agents neither list nor resolve.
    assert client.get("/api/v1/complaints", headers=agent).status_code == 403
    r = client.post(
        f"/api/v1/complaints/{complaint['id']}/resolve", json={"resolution": "x"}, headers=agent
    )
    assert r.status_code == 403

    listed = client.get(
        "/api/v1/complaints", params={"status": "open", "unread": "true"}, headers=admin
    ).json()
    assert [c["number"] for c in listed["items"]] == [complaint["number"]]
    assert client.get("/api/v1/dashboard", headers=admin).json()["unread_complaints"] == 1

    r = client.post(
        f"/api/v1/complaints/{complaint['id']}/resolve",
        json={"resolution": "Cable reconnected at the tap."},
        headers=admin,
    )
    assert r.status_code == 200
    assert r.json()["status"] == "resolved"
    assert [e["kind"] for e in r.json()["events"]] == ["raised", "resolved"]
    r = client.post(
        f"/api/v1/complaints/{complaint['id']}/resolve",
        json={"resolution": "Again"},
        headers=admin,
    )
    assert r.status_code == 409
    assert (
        client.get("/api/v1/complaints", params={"status": "open"}, headers=admin).json()["items"]
        == []
    )

    run(mail.deliver_due(smtp_settings))
    subjects = sorted(m["Subject"] for m in mailbox.to("ana@example.com"))
    assert f"Complaint {complaint['number']} received" in subjects
    resolved = next(m for m in mailbox.messages if m["Subject"].endswith("resolved"))
    assert "Cable reconnected at the tap." in Mailbox.text(resolved)


def test_operations_are_in_the_schema(client):
    schema = client.get("/schema/openapi.json").json()
    ids = {op.get("operationId") for path in schema["paths"].values() for op in path.values()}
    assert {"raiseComplaint", "listComplaints", "getComplaint", "resolveComplaint"} <= ids
