"""Complaint pages: a customer raises one and follows it; the office filters, reads, notes
and resolves; both e-mails reach a real SMTP server; nobody sees another customer's."""

from __future__ import annotations

from bs4 import BeautifulSoup

from appliance.complaints import service as complaints
from appliance.mail import service as mail
from tests.complaints.mailbox import Mailbox
from tests.conftest import run
from tests.helpers import (
    SYSTEM,
    customer_password,
    field_error,
    html,
    login,
    make_customer,
    make_staff,
    post_form,
)


def _customer(settings, client, **overrides):
    row = run(make_customer(settings, **overrides))
    login(client, row["crf"], run(customer_password(row["id"])))
    return row


def _admin(client):
    staff = run(make_staff("admin"))
    login(client, staff["username"])
    return staff


def _numbers(response) -> list[str]:
    return [tr["data-number"] for tr in html(response).select("table.complaints tbody tr")]


def test_complaint_from_portal_to_resolved_with_both_emails(
    settings, smtp_settings, mailbox: Mailbox, client, client2
):
    _customer(settings, client, name="Ana", email="ana@example.com")
    page = html(client.get("/portal/complaints"))
    assert page.find("a", href="/portal/complaints") is not None  # the nav link
    # A short message is refused at its field; what was typed is kept.
    r = post_form(client, "/portal/complaints", {"category": "no_signal", "message": "No"})
    assert r.status_code == 422
    page = html(r)
    assert field_error(page, "message")
    assert page.find("textarea", attrs={"name": "message"}).get_text() == "No"
    assert page.find("option", selected=True)["value"] == "no_signal"

    message = "No signal since <b>Monday</b> & the box blinks red"
    r = post_form(
        client,
        "/portal/complaints",
        {"category": "no_signal", "message": message},
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = html(client.get(r.headers["location"]))
    number = "TS-C-000001"
    assert number in page.find("h1").get_text()
    assert number in page.find(role="status").get_text()
    # Escaped: the customer's markup is text, not a tag.
    history = page.find("ol", class_="history")
    assert history.find("b") is None
    assert message in history.get_text()

    admin = _admin(client2)
    dashboard = html(client2.get("/"))
    assert dashboard.find(attrs={"data-count": "unread-complaints"}).get_text() == "1"
    listing = client2.get("/complaints")
    assert _numbers(listing) == [number]
    complaint_id = html(listing).select_one("table.complaints a")["href"].rsplit("/", 1)[1]
    r = post_form(
        client2,
        f"/complaints/{complaint_id}/notes",
        {"note": "Amplifier on pole 7 is down", "visible": ""},
        page=f"/complaints/{complaint_id}",
        follow_redirects=False,
    )
    assert r.status_code == 303
    r = post_form(
        client2,
        f"/complaints/{complaint_id}/notes",
        {"note": "A technician visits tomorrow", "visible": "1"},
        page=f"/complaints/{complaint_id}",
    )
    assert r.status_code == 200
    # Resolving without a note is refused at the field, nothing is lost.
    r = post_form(
        client2,
        f"/complaints/{complaint_id}/resolve",
        {"resolution": ""},
        page=f"/complaints/{complaint_id}",
    )
    assert r.status_code == 422
    assert field_error(html(r), "resolution")
    r = post_form(
        client2,
        f"/complaints/{complaint_id}/resolve",
        {"resolution": "Amplifier replaced; signal is back."},
        page=f"/complaints/{complaint_id}",
    )
    assert r.status_code == 200
    page = html(r)
    assert [li["data-kind"] for li in page.select("ol.history li")] == [
        "raised",
        "note",
        "note",
        "resolved",
    ]
    assert page.find("form", action=f"/complaints/{complaint_id}/resolve") is None
    assert admin["username"] in page.find("ol", class_="history").get_text()
    assert html(client2.get("/")).find(attrs={"data-count": "unread-complaints"}).get_text() == "0"

    # The customer's history: raised, the visible note, resolved; not the internal note.
    page = html(client.get(f"/portal/complaints/{complaint_id}"))
    text = page.find("ol", class_="history").get_text()
    assert "A technician visits tomorrow" in text
    assert "Amplifier replaced; signal is back." in text
    assert "pole 7" not in text
    assert admin["username"] not in text

    run(mail.deliver_due(smtp_settings))
    mine = {m["Subject"]: m for m in mailbox.to("ana@example.com")}
    assert number in Mailbox.text(mine[f"Complaint {number} received"])
    resolved = mine[f"Complaint {number} resolved"]
    assert "Amplifier replaced; signal is back." in Mailbox.text(resolved)
    # The customer's text is escaped in the HTML part too.
    received_html = BeautifulSoup(Mailbox.html(mine[f"Complaint {number} received"]), "html.parser")
    assert received_html.find("b") is None
    assert "<b>Monday</b>" in received_html.find("blockquote").get_text()


def test_office_filters_and_marks_read(settings, client):
    ana = run(make_customer(settings))
    made = {}
    for category, message in [
        ("billing", "Charged twice"),
        ("no_signal", "Dark screen"),
        ("slow_speed", "Slow at night"),
    ]:
        made[category] = run(
            complaints.raise_complaint(
                ana["id"], category=category, message=message, actor=SYSTEM, settings=settings
            )
        )["number"]
    run(
        complaints.resolve_complaint(
            run(complaints.list_complaints(category="billing")).rows[0]["id"],
            resolution="Refunded",
            actor=SYSTEM,
            settings=settings,
        )
    )
    _admin(client)
    assert _numbers(client.get("/complaints")) == [
        made["slow_speed"],
        made["no_signal"],
        made["billing"],
    ]
    assert _numbers(client.get("/complaints", params={"status": "resolved"})) == [made["billing"]]
    assert _numbers(client.get("/complaints", params={"category": "no_signal"})) == [
        made["no_signal"]
    ]
    assert _numbers(client.get("/complaints", params={"unread": "1"})) == [
        made["slow_speed"],
        made["no_signal"],
    ]
    # The HTMX request gets just the table.
    fragment = client.get("/complaints", params={"unread": "1"}, headers={"hx-request": "true"})
    assert html(fragment).find("h1") is None and _numbers(fragment)

    page = html(client.get("/complaints", params={"unread": "1"}))
    row = page.find("tr", attrs={"data-number": made["no_signal"]})
    form = row.find("form")
    back = form.find("input", attrs={"name": "back"})["value"]
    r = post_form(
        client, form["action"], {"back": back}, page="/complaints", follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == back
    assert _numbers(client.get(back)) == [made["slow_speed"]]
    assert _numbers(client.get("/complaints", params={"unread": "0"})) == [
        made["no_signal"],
        made["billing"],
    ]
    # An address elsewhere is not followed.
    r = post_form(
        client,
        form["action"],
        {"back": "https://evil.example/"},
        page="/complaints",
        follow_redirects=False,
    )
    assert r.headers["location"].startswith("/complaints/")


def test_office_records_a_complaint_for_a_customer(settings, client):
    ana = run(make_customer(settings))
    _admin(client)
    r = post_form(
        client,
        "/complaints",
        {"crf": "TS999999", "category": "other", "message": "Hello there"},
        page="/complaints/new",
    )
    assert r.status_code == 422
    assert field_error(html(r), "crf")
    r = post_form(
        client,
        "/complaints",
        {"crf": ana["crf"].lower(), "category": "set_top_box", "message": "Remote is dead"},
        page="/complaints/new",
    )
    assert r.status_code == 200
    page = html(r)
    assert "TS-C-000001" in page.find("h1").get_text()
    assert ana["crf"] in page.find("dl").get_text()


def test_a_customer_cannot_reach_another_customers_complaint(settings, client, client2):
    ana = _customer(settings, client)
    bob = _customer(settings, client2)
    post_form(client, "/portal/complaints", {"category": "billing", "message": "Ana's secret"})
    theirs = run(complaints.list_complaints(customer_id=ana["id"])).rows[0]

    r = client2.get(f"/portal/complaints/{theirs['id']}")
    assert r.status_code == 404
    assert "Ana's secret" not in r.text
    page = html(client2.get("/portal/complaints"))
    assert page.select("table.complaints tbody tr") == []
    # The office pages are not for customers.
    assert client2.get("/complaints").status_code == 403
    assert client2.get(f"/complaints/{theirs['id']}").status_code == 403
    r = post_form(
        client2,
        f"/complaints/{theirs['id']}/resolve",
        {"resolution": "Done by Bob"},
        page="/portal/complaints",
    )
    assert r.status_code == 403
    assert run(complaints.get_complaint(theirs["id"]))["status"] == "open"
    assert bob["id"] != ana["id"]
