"""Complaints through the service: numbering, the two e-mails received by a real SMTP server,
history, filters, the unread count."""

from __future__ import annotations

import pytest

from appliance.complaints import service as complaints
from appliance.complaints.tables import Complaint, ComplaintEvent
from appliance.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from appliance.mail import service as mail
from appliance.mail.tables import OutboxMessage
from tests.complaints.mailbox import Mailbox
from tests.helpers import SYSTEM, make_customer


class Customer:
    """A customer acting for themselves."""

    role = "customer"
    display_name = "the customer"

    def __init__(self, row):
        self.id = None
        self.customer_id = row["id"]


async def test_a_raised_complaint_gets_a_number_and_the_customer_an_email_with_it(
    settings, smtp_settings, mailbox: Mailbox
):
    ana = await make_customer(settings, name="Ana Souza", email="ana@example.com")
    first = await complaints.raise_complaint(
        ana["id"],
        category="no_signal",
        message="No picture on any channel since this morning.",
        actor=Customer(ana),
        settings=settings,
    )
    second = await complaints.raise_complaint(
        ana["id"], category="billing", message="Charged twice.", actor=SYSTEM, settings=settings
    )
    assert first["number"] == "TS-C-000001"
    assert second["number"] == "TS-C-000002"
    assert first["status"] == "open" and first["read_at"] is None
    assert [e["kind"] for e in first["events"]] == ["raised"]

    counts = await mail.deliver_due(smtp_settings)
    assert counts["sent"] == 3  # the welcome e-mail and the two complaints
    received = [m for m in mailbox.to("ana@example.com") if "Complaint" in m["Subject"]]
    assert len(received) == 2
    by_subject = {m["Subject"]: m for m in received}
    message = by_subject["Complaint TS-C-000001 received"]
    text = Mailbox.text(message)
    assert "TS-C-000001" in text and "Ana Souza" in text
    assert "No picture on any channel since this morning." in text
    assert "No signal" in text
    assert "TS-C-000001" in Mailbox.html(message)


async def test_numbers_are_never_reused(settings):
    bia = await make_customer(settings)
    numbers = []
    for _ in range(3):
        row = await complaints.raise_complaint(
            bia["id"], category="other", message="Something else", actor=SYSTEM, settings=settings
        )
        numbers.append(row["number"])
    # Even if a complaint row vanished, the counter only grows.
    await ComplaintEvent.delete().where(ComplaintEvent.complaint.is_not_null())
    await Complaint.delete().where(Complaint.number == numbers[-1])
    row = await complaints.raise_complaint(
        bia["id"], category="other", message="Once more", actor=SYSTEM, settings=settings
    )
    assert numbers == ["TS-C-000001", "TS-C-000002", "TS-C-000003"]
    assert row["number"] == "TS-C-000004"


async def test_resolving_emails_the_resolution_note_once(settings, smtp_settings, mailbox: Mailbox):
    caio = await make_customer(settings, name="Caio", email="caio@example.com")
    row = await complaints.raise_complaint(
        caio["id"],
        category="slow_speed",
        message="Very slow at night",
        actor=SYSTEM,
        settings=settings,
    )
    await complaints.add_note(
        row["id"],
        text="Line noise on pole 12; technician booked.",
        visible_to_customer=False,
        actor=SYSTEM,
    )
    resolved = await complaints.resolve_complaint(
        row["id"],
        resolution="Replaced the splitter at your house.",
        actor=SYSTEM,
        settings=settings,
    )
    assert resolved["status"] == "resolved"
    assert resolved["resolution"] == "Replaced the splitter at your house."
    assert resolved["read_at"] is not None  # resolving reads it
    assert [e["kind"] for e in resolved["events"]] == ["raised", "note", "resolved"]
    with pytest.raises(Conflict):
        await complaints.resolve_complaint(
            row["id"], resolution="Again", actor=SYSTEM, settings=settings
        )

    await mail.deliver_due(smtp_settings)
    subjects = [m["Subject"] for m in mailbox.to("caio@example.com") if "Complaint" in m["Subject"]]
    assert sorted(subjects) == [
        f"Complaint {row['number']} received",
        f"Complaint {row['number']} resolved",
    ]
    resolved_mail = next(m for m in mailbox.messages if m["Subject"].endswith("resolved"))
    assert "Replaced the splitter at your house." in Mailbox.text(resolved_mail)
    assert "Replaced the splitter at your house." in Mailbox.html(resolved_mail)
    # The internal note never reaches the customer.
    assert "pole 12" not in Mailbox.text(resolved_mail)


async def test_a_customer_without_email_gets_no_message(settings):
    dora = await make_customer(settings, email="")
    row = await complaints.raise_complaint(
        dora["id"],
        category="set_top_box",
        message="Box restarts",
        actor=SYSTEM,
        settings=settings,
    )
    await complaints.resolve_complaint(
        row["id"], resolution="Box swapped.", actor=SYSTEM, settings=settings
    )
    assert await OutboxMessage.count() == 0


async def test_input_is_checked(settings):
    eva = await make_customer(settings)
    with pytest.raises(ValidationFailed) as exc:
        await complaints.raise_complaint(
            eva["id"], category="weather", message="", actor=SYSTEM, settings=settings
        )
    assert set(exc.value.errors) == {"category", "message"}
    with pytest.raises(ValidationFailed) as exc:
        await complaints.raise_complaint(
            eva["id"],
            category="other",
            message="x" * (complaints.MAX_MESSAGE + 1),
            actor=SYSTEM,
            settings=settings,
        )
    assert "message" in exc.value.errors
    row = await complaints.raise_complaint(
        eva["id"],
        category="other",
        message="  Line one\r\nLine two  ",
        actor=SYSTEM,
        settings=settings,
    )
    assert row["message"] == "Line one\nLine two"
    with pytest.raises(ValidationFailed) as exc:
        await complaints.resolve_complaint(
            row["id"], resolution=" ", actor=SYSTEM, settings=settings
        )
    assert "resolution" in exc.value.errors


async def test_a_customer_acts_only_on_their_own(settings):
    ana = await make_customer(settings)
    bob = await make_customer(settings)
    row = await complaints.raise_complaint(
        ana["id"], category="other", message="Mine, not Bob's", actor=SYSTEM, settings=settings
    )
    with pytest.raises(PermissionDenied):
        await complaints.raise_complaint(
            ana["id"],
            category="other",
            message="Pretending",
            actor=Customer(bob),
            settings=settings,
        )
    with pytest.raises(NotFound):
        await complaints.get_complaint(row["id"], viewer=Customer(bob))
    mine = await complaints.get_complaint(row["id"], viewer=Customer(ana))
    assert mine["number"] == row["number"]


async def test_customers_see_visible_notes_only(settings):
    ana = await make_customer(settings)
    row = await complaints.raise_complaint(
        ana["id"], category="no_signal", message="Dark screen", actor=SYSTEM, settings=settings
    )
    await complaints.add_note(
        row["id"], text="Customer was rude", visible_to_customer=False, actor=SYSTEM
    )
    await complaints.add_note(
        row["id"],
        text="A technician comes tomorrow morning",
        visible_to_customer=True,
        actor=SYSTEM,
    )
    seen = await complaints.get_complaint(row["id"], viewer=Customer(ana))
    assert [e["text"] for e in seen["events"]] == ["", "A technician comes tomorrow morning"]
    office = await complaints.get_complaint(row["id"])
    assert len(office["events"]) == 3


async def test_filters_newest_first_and_unread_count(settings):
    ana = await make_customer(settings)
    raised = []
    for category in ("no_signal", "billing", "no_signal", "slow_speed"):
        raised.append(
            await complaints.raise_complaint(
                ana["id"],
                category=category,
                message=f"About {category}",
                actor=SYSTEM,
                settings=settings,
            )
        )
    assert await complaints.unread_count() == 4
    await complaints.mark_read(raised[0]["id"], actor=SYSTEM)
    await complaints.mark_read(raised[0]["id"], actor=SYSTEM)  # twice is harmless
    await complaints.resolve_complaint(
        raised[1]["id"], resolution="Refunded", actor=SYSTEM, settings=settings
    )
    assert await complaints.unread_count() == 2

    def numbers(page):
        return [r["number"] for r in page.rows]

    everything = await complaints.list_complaints()
    assert numbers(everything) == [r["number"] for r in reversed(raised)]
    assert numbers(await complaints.list_complaints(status="resolved")) == [raised[1]["number"]]
    assert numbers(await complaints.list_complaints(category="no_signal")) == [
        raised[2]["number"],
        raised[0]["number"],
    ]
    assert numbers(await complaints.list_complaints(unread=True)) == [
        raised[3]["number"],
        raised[2]["number"],
    ]
    assert numbers(
        await complaints.list_complaints(status="open", category="no_signal", unread=False)
    ) == [raised[0]["number"]]
    with pytest.raises(NotFound):
        await complaints.mark_read("00000000-0000-0000-0000-000000000000", actor=SYSTEM)
