"""Outbox delivery against a real SMTP server (aiosmtpd on 127.0.0.1): a server that is down and
comes back gets every queued message exactly once; a busy server (4xx) is retried with back-off;
a permanent refusal (5xx) fails the message with the server's reason until the admin retries; the
Message-ID is the same on every attempt."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from appliance import clock
from appliance.mail import service as mail
from appliance.mail.tables import OutboxMessage
from appliance.settings import Settings
from tests.system.smtp import HOST, Mailbox, _free_port


class FlakyMailbox(Mailbox):
    """Answers 451 (try again later) for the addresses in ``busy``."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.busy: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address in self.busy:
            return "451 4.3.0 mailbox busy, try again later"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


@contextmanager
def serving(box: Mailbox) -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    controller = Controller(box, hostname=HOST, port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def box() -> FlakyMailbox:
    """A mailbox on a port where nothing listens until a test starts serving it."""
    return FlakyMailbox(_free_port())


@pytest.fixture
def to_box(settings: Settings, box: FlakyMailbox) -> Settings:
    return dataclasses.replace(settings, smtp_host=HOST, smtp_port=box.port, smtp_tls="none")


async def _queue(settings: Settings, *addresses: str) -> list[dict]:
    rows = []
    for n, to in enumerate(addresses):
        rows.append(
            await mail.queue(
                settings=settings,
                kind="complaint_received",
                to=to,
                context={
                    "name": f"Customer {n}",
                    "number": f"TS-C-{n:06d}",
                    "raised_on": clock.today(settings.tz),
                    "category": "Other",
                    "message": "Testing delivery",
                },
            )
        )
    return rows


async def _rows() -> dict[str, dict]:
    return {r["to_addr"]: r for r in await OutboxMessage.select()}


def _after_backoff(row: dict) -> None:
    """Move the clock past the row's next attempt."""
    clock.shift(row["next_attempt_at"] - clock.now() + mail.BASE_DELAY / 30)


async def test_server_down_then_up_delivers_every_message_exactly_once(to_box, box):
    addresses = [f"c{n}@example.com" for n in range(4)]
    queued = await _queue(to_box, *addresses)

    # Down: the first attempt fails and the round stops (the rest would fail the same way).
    first = await mail.deliver_due(to_box)
    assert first == {"sent": 0, "retry": 1, "failed": 0}
    rows = await _rows()
    assert {r["status"] for r in rows.values()} == {"queued"}
    tried = rows[addresses[0]]
    assert tried["attempts"] == 1 and "ConnectionRefused" in tried["last_error"]
    assert tried["next_attempt_at"] - clock.now() > mail.BASE_DELAY / 2
    # Still down a back-off later: the delay grows.
    _after_backoff(tried)
    assert (await mail.deliver_due(to_box))["retry"] == 1
    again = (await _rows())[addresses[0]]
    assert again["attempts"] == 2
    assert again["next_attempt_at"] - clock.now() > mail.backoff(2) - mail.BASE_DELAY / 2

    with serving(box):
        _after_backoff(again)
        assert await mail.deliver_due(to_box) == {"sent": 4, "retry": 0, "failed": 0}
        # Later rounds find nothing to send.
        clock.shift(mail.MAX_DELAY)
        assert await mail.deliver_due(to_box) == {"sent": 0, "retry": 0, "failed": 0}
    for address in addresses:
        assert len(box.to(address)) == 1, address
    assert len(box.messages) == 4
    sent_ids = sorted(m["Message-ID"] for m in box.messages)
    assert sent_ids == sorted(q["message_id"] for q in queued)
    rows = await _rows()
    assert {r["status"] for r in rows.values()} == {"sent"}
    assert all(r["last_error"] == "" and r["sent_at"] for r in rows.values())


async def test_a_busy_answer_is_retried_with_backoff_and_delivered_once(to_box, box):
    await _queue(to_box, "busy@example.com", "free@example.com")
    box.busy.add("busy@example.com")
    with serving(box):
        # A 4xx for one recipient does not hold back the others.
        assert await mail.deliver_due(to_box) == {"sent": 1, "retry": 1, "failed": 0}
        busy = (await _rows())["busy@example.com"]
        assert busy["status"] == "queued" and "451" in busy["last_error"]
        # Not retried before its time.
        assert await mail.deliver_due(to_box) == {"sent": 0, "retry": 0, "failed": 0}
        box.busy.clear()
        _after_backoff(busy)
        assert (await mail.deliver_due(to_box))["sent"] == 1
    assert len(box.to("busy@example.com")) == 1 and len(box.to("free@example.com")) == 1


async def test_a_permanent_refusal_fails_with_the_servers_reason_until_retried(to_box, box):
    [row] = await _queue(to_box, "gone@example.com")
    box.refuse.add("gone@example.com")
    with serving(box):
        assert (await mail.deliver_due(to_box))["failed"] == 1
        failed = (await _rows())["gone@example.com"]
        assert failed["status"] == "failed"
        assert (
            failed["last_error"].startswith("550") and "mailbox unavailable" in failed["last_error"]
        )
        # A failed message is never tried again on its own.
        clock.shift(mail.MAX_DELAY)
        assert await mail.deliver_due(to_box) == {"sent": 0, "retry": 0, "failed": 0}
        assert await mail.list_outbox(status="failed") != []
        box.refuse.clear()
        await mail.retry(row["id"])
        assert (await mail.deliver_due(to_box))["sent"] == 1
    [message] = box.to("gone@example.com")
    assert message["Message-ID"] == row["message_id"]


async def test_a_server_that_stays_down_is_given_up_after_the_last_attempt(to_box, box):
    await _queue(to_box, "never@example.com")
    for _ in range(mail.MAX_ATTEMPTS):
        row = (await _rows())["never@example.com"]
        assert row["status"] == "queued"
        _after_backoff(row)
        await mail.deliver_due(to_box)
    row = (await _rows())["never@example.com"]
    assert row["status"] == "failed" and row["attempts"] == mail.MAX_ATTEMPTS
    assert "ConnectionRefused" in row["last_error"]


async def test_a_crash_before_bookkeeping_gives_one_duplicate_with_the_same_message_id(to_box, box):
    [row] = await _queue(to_box, "once@example.com")
    with serving(box):
        await mail.deliver_due(to_box)
        # The server took the message, then the box lost power before marking it sent.
        await OutboxMessage.update(
            {OutboxMessage.status: "queued", OutboxMessage.sent_at: None}
        ).where(OutboxMessage.id == row["id"])
        await mail.deliver_due(to_box)
        assert await mail.deliver_due(to_box) == {"sent": 0, "retry": 0, "failed": 0}
    copies = box.to("once@example.com")
    assert len(copies) == 2
    assert {m["Message-ID"] for m in copies} == {row["message_id"]}
