"""A real SMTP server (aiosmtpd on 127.0.0.1, a free port) and settings that deliver to it."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from typing import Any

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

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]

    @staticmethod
    def text(message: EmailMessage) -> str:
        return message.get_body(preferencelist=("plain",)).get_content()

    @staticmethod
    def html(message: EmailMessage) -> str:
        return message.get_body(preferencelist=("html",)).get_content()


class _Collector:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.box.messages.append(message)  # type: ignore[arg-type]
        return "250 OK"


@contextmanager
def running_mailbox() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    box = Mailbox(_free_port())
    controller = Controller(_Collector(box), hostname=HOST, port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


def delivering_to(settings: Settings, box: Mailbox) -> Settings:
    """``settings`` delivering to ``box`` (pass them to ``mail.deliver_due``)."""
    return dataclasses.replace(settings, smtp_host=HOST, smtp_port=box.port, smtp_tls="none")
