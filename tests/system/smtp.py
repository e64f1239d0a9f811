"""A real SMTP server for tests (aiosmtpd on 127.0.0.1, a free port) that can refuse
chosen recipients with a permanent error, and settings that deliver to it."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest

from appliance.jobs.queue import configure_queue
from appliance.settings import Settings

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Mailbox:
    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[EmailMessage] = []
        self.refuse: set[str] = set()

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]

    @staticmethod
    def text(message: EmailMessage) -> str:
        return message.get_body(preferencelist=("plain",)).get_content()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address in self.refuse:
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(message)  # type: ignore[arg-type]
        return "250 OK"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    box = Mailbox(_free_port())
    controller = Controller(box, hostname=HOST, port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def smtp_settings(settings: Settings, mailbox: Mailbox) -> Iterator[Settings]:
    """The test's settings delivering to ``mailbox``; queued tasks run inline with them."""
    changed = dataclasses.replace(settings, smtp_host=HOST, smtp_port=mailbox.port, smtp_tls="none")
    configure_queue(changed, immediate=True)
    yield changed
    configure_queue(settings, immediate=True)


@pytest.fixture
def smtp_client(smtp_settings):
    """A browser on an app built with ``smtp_settings``."""
    from litestar.testing import TestClient

    from appliance.web.app import create_app

    with TestClient(create_app(smtp_settings, queue=False), base_url="http://127.0.0.1") as c:
        yield c
