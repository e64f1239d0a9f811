"""The billing rules as plain functions of plain values (no database), so they can be tested at
their boundaries: months and periods, the expiry date that follows the grid, the connection
status that follows the expiry, the order in which money settles months, and the amount check.

A *period* is a month written ``YYYYMM`` as an integer (202602 is February 2026): it sorts like
the month and compares in SQL on both engines. docs/billing.md explains the rules in prose.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from appliance.i18n import gettext as _

INACTIVE_DAYS = 60  # expired 1..60 days ago: inactive; longer: suspended


def period(year: int, month: int) -> int:
    return year * 100 + month


def split(p: int) -> tuple[int, int]:
    return divmod(p, 100)


def next_period(p: int) -> int:
    year, month = split(p)
    return period(year + 1, 1) if month == 12 else p + 1


def previous_period(p: int) -> int:
    year, month = split(p)
    return period(year - 1, 12) if month == 1 else p - 1


def period_of(day: dt.date) -> int:
    return period(day.year, day.month)


def month_end(p: int) -> dt.date:
    year, month = split(p)
    return dt.date(year, month, calendar.monthrange(year, month)[1])


def month_start(p: int) -> dt.date:
    year, month = split(p)
    return dt.date(year, month, 1)


def covered_through(paid_until: dt.date) -> int:
    """The last month a paid-until date covers whole: 31 Mar -> March, 30 Mar -> February."""
    return previous_period(period_of(paid_until + dt.timedelta(days=1)))


def opening_through(registered_on: dt.date, paid_until: dt.date | None) -> int:
    """Last month paid before the box billed anything: from the expiry date typed at
    registration, and never earlier than the month before registration."""
    before = previous_period(period_of(registered_on))
    if paid_until is None:
        return before
    return max(before, covered_through(paid_until))


@dataclass(frozen=True)
class Month:
    """One charge row as the rules see it."""

    period: int
    state: str  # scheduled, billed, waived
    amount: int
    paid: int

    @property
    def settled(self) -> bool:
        return self.state == "billed" and self.paid >= self.amount

    @property
    def open(self) -> int:
        return max(self.amount - self.paid, 0) if self.state == "billed" else 0


def paid_through(months: Iterable[Month], opening: int) -> int:
    """Last month of the unbroken run of paid months.

    The run starts after what was paid before the box (``opening``); a waived month (the
    connection was suspended) neither breaks nor extends it; the first unpaid or partly paid
    month ends it, and so does a month not billed yet.
    """
    through = opening
    for m in sorted(months, key=lambda m: m.period):
        if m.period <= opening or m.state == "waived":
            continue
        if not m.settled:
            break
        through = m.period
    return through


def expiry_date(months: Iterable[Month], opening: int) -> dt.date:
    """The connection's expiry: the last day of its last month paid in an unbroken run."""
    return month_end(paid_through(months, opening))


def status_for(expires_on: dt.date | None, today: dt.date) -> str:
    """active while paid (expiry today or later), inactive 1..60 days after, then suspended."""
    if expires_on is None:
        return "inactive"
    lapsed = (today - expires_on).days
    if lapsed <= 0:
        return "active"
    return "inactive" if lapsed <= INACTIVE_DAYS else "suspended"


def allocate(open_months: Sequence[tuple[Any, int]], money: int) -> list[tuple[Any, int]]:
    """Spread ``money`` over ``(key, open amount)`` pairs already sorted oldest first.

    Returns ``(key, amount)`` for each month touched; what is left is the caller's credit.
    """
    result = []
    for key, open_amount in open_months:
        if money <= 0:
            break
        take = min(open_amount, money)
        if take > 0:
            result.append((key, take))
            money -= take
    return result


def amount_problem(amount: int, due: int, minimum: int, money: Any) -> str | None:
    """Why ``amount`` cannot be taken against ``due`` (None if it can).

    At least ``minimum`` unless the whole due is smaller, then exactly the due; never above the
    due. ``money`` formats minor units for the message.
    """
    if due <= 0:
        return _("Nothing is due on this account.")
    if amount > due:
        return _("This is more than the amount due, %(due)s.", due=money(due))
    if due < minimum:
        if amount != due:
            return _(
                "The amount due, %(due)s, is below the minimum payment: pay exactly %(due)s.",
                due=money(due),
            )
        return None
    if amount < minimum:
        return _("The smallest payment accepted is %(minimum)s.", minimum=money(minimum))
    return None


def month_label(year: int, month: int) -> str:
    """``"March 2026"`` in the current language."""
    from appliance.i18n import month_name

    return f"{month_name(month)} {year}"
