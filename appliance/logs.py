"""Logging set-up: one line per event, with the record's extra fields as key=value pairs.

Level policy: INFO for lifecycle events (a customer created, a payment recorded, a job's
summary), WARNING for expected trouble (SMTP down, a locked account), ERROR/exception for the
unexpected. Passwords, OTPs, tokens and whole customer records are never logged.
"""

from __future__ import annotations

import logging
import os

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in sorted(extras.items()))
        return line


def setup(level: str | None = None) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("CTVMS_LOG_LEVEL", "INFO"))
    # huey logs every task start at INFO; keep its chatter to warnings.
    logging.getLogger("huey").setLevel(logging.WARNING)
    # aiosqlite logs every statement with its parameters at DEBUG, and the outbox's parameters
    # are e-mail bodies with temporary passwords and one-time codes: never below INFO.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
