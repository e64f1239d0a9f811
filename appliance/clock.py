"""The one place that reads the wall clock, so tests and the admin's "run now" can move it."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

_offset = dt.timedelta(0)


def now() -> dt.datetime:
    """Current time, aware, in UTC."""
    return dt.datetime.now(dt.UTC) + _offset


def today(tz: ZoneInfo) -> dt.date:
    """The office's calendar day (days begin at midnight in the office time zone)."""
    return now().astimezone(tz).date()


def shift(delta: dt.timedelta) -> None:
    """Move this process's clock (tests only)."""
    global _offset
    _offset += delta


def reset() -> None:
    global _offset
    _offset = dt.timedelta(0)
