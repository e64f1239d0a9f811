"""The invoice e-mail: queued with the payment, delivered by a real SMTP server on 127.0.0.1
with the invoice PDF attached, made at delivery time (again if the cached file is gone)."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import socket
from collections.abc import Iterator

import pytest

from appliance.invoices import service as invoices
from appliance.mail import service as mail
from appliance.mail.tables import OutboxMessage
from tests.conftest import run
from tests.invoices.test_render import pdf_text

HOST = "127.0.0.1"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    def invoices(self, number: str) -> list[email.message.EmailMessage]:
        # The customer's welcome e-mail (sent first) is in the same outbox.
        return [m for m in self.messages if number in m["Subject"]]

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"


@pytest.fixture
def smtp(settings) -> Iterator[tuple[Inbox, object]]:
    from aiosmtpd.controller import Controller

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname=HOST, port=port)
    controller.start()
    try:
        yield inbox, dataclasses.replace(settings, smtp_host=HOST, smtp_port=port, smtp_tls="none")
    finally:
        controller.stop()


def outbox_rows():
    return run(OutboxMessage.select().where(OutboxMessage.kind == "invoice"))


def test_invoice_email_arrives_with_the_pdf_attached(settings, office, smtp):
    inbox, delivering = smtp
    number = office["number"]
    [row] = outbox_rows()
    assert row["to_addr"] == "ana@example.com" and row["status"] == "queued"
    attachments = row["attachments"]
    assert (json.loads(attachments) if isinstance(attachments, str) else attachments) == [
        {"invoice": number}
    ]

    assert run(mail.deliver_due(delivering))["sent"] == 2  # welcome and invoice
    [message] = inbox.invoices(number)
    assert message["To"] == "ana@example.com" and number in message["Subject"]
    body = message.get_body(preferencelist=("plain",)).get_content()
    assert "R$100.00" in body and number in body
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == f"{number}.pdf"
    data = attachment.get_content()
    assert data.startswith(b"%PDF-")
    _, text = pdf_text(data)
    assert number in text and "R$100.00" in text
    assert outbox_rows()[0]["status"] == "sent"


def test_a_deleted_pdf_is_made_again_for_the_email(settings, office, smtp):
    inbox, delivering = smtp
    number = office["number"]
    invoices.pdf_path(settings, number, "a4", settings.locale).unlink()
    run(mail.deliver_due(delivering))
    [message] = inbox.invoices(number)
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content().startswith(b"%PDF-")
    assert number in pdf_text(attachment.get_content())[1]


def test_a_pdf_that_cannot_be_made_keeps_the_email_queued_for_a_retry(settings, office, smtp):
    import shutil

    inbox, delivering = smtp
    shutil.rmtree(settings.invoices_dir)
    settings.invoices_dir.write_text("a file where the folder should be")
    assert run(mail.deliver_due(delivering)) == {"sent": 1, "retry": 1, "failed": 0}
    assert inbox.invoices(office["number"]) == []
    [row] = outbox_rows()
    assert row["status"] == "queued" and row["attempts"] == 1
    assert "invoice" in row["last_error"]
