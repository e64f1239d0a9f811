"""The admin dashboard's charts, drawn on the box as SVG: no script, nothing fetched.

Two pictures: for each service, the money of the last twelve months' charges, received and
still pending (the same figures as the payment reports: a month's *received* is what its
charges got paid, *pending* what they still miss); and the connections by status. Each comes
with its numbers as a table for screen readers and for whoever wants the exact figures.

Figures and drawings are separate: :func:`collections_chart` and :func:`status_chart` draw
from plain numbers, so the owner's consolidated view can draw one office's figures from its
own data. The twelve-month sums read a whole year of charges; they are kept in memory while
the ledger has not changed (see :func:`_ledger_version`), so a dashboard load stays cheap.
"""

# SQL text here is assembled from constants and placeholders only; values travel as parameters.

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from typing import Any

from babel.numbers import format_compact_currency
from markupsafe import Markup, escape

from appliance import clock, i18n
from appliance.billing.tables import Charge
from appliance.customers import service as customers
from appliance.customers.tables import STATUSES
from appliance.i18n import gettext as _
from appliance.plans.service import service_label
from appliance.plans.tables import SERVICES
from appliance.reports.columns import status_label
from appliance.settings import Settings

MONTHS = 12
CACHE_SECONDS = 300
RECEIVED_COLOUR = "#2f855a"
PENDING_COLOUR = "#dd6b20"
STATUS_COLOURS = {"active": "#2f855a", "inactive": "#d69e2e", "suspended": "#c53030"}
GRID_COLOUR = "#8a8a8a"


@dataclass(frozen=True)
class MonthFigures:
    year: int
    month: int
    received: int  # minor units
    pending: int

    @property
    def charged(self) -> int:
        return self.received + self.pending


def last_months(today: dt.date, count: int = MONTHS) -> list[tuple[int, int]]:
    """(year, month) of the ``count`` months ending with ``today``'s, oldest first."""
    year, month = today.year, today.month
    out = []
    for _i in range(count):
        out.append((year, month))
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return out[::-1]


# -- figures --------------------------------------------------------------------------------

# (database, today, months) -> (good until, ledger version, figures)
_cache: dict[tuple[Any, ...], tuple[float, tuple[Any, ...], dict[str, list[MonthFigures]]]] = {}
_cache_lock = threading.Lock()


async def _ledger_version() -> tuple[Any, ...]:
    """Changes whenever a payment, reversal or charge row is added (ids are time-ordered);
    each part is one look at the end of a primary-key index."""
    # ORDER BY ... LIMIT 1 rather than max(id): PostgreSQL has no max() of a uuid.
    rows = await Charge.raw(
        "SELECT (SELECT id FROM billing_payments ORDER BY id DESC LIMIT 1) AS p, "
        "(SELECT id FROM billing_reversals ORDER BY id DESC LIMIT 1) AS r, "
        "(SELECT id FROM billing_charges ORDER BY id DESC LIMIT 1) AS c"
    )
    row = rows[0] if rows else {}
    return (str(row.get("p")), str(row.get("r")), str(row.get("c")))


async def collections(
    settings: Settings, today: dt.date, *, months: int = MONTHS, office: str = ""
) -> dict[str, list[MonthFigures]]:
    """Per service, each of the last ``months`` months' received and pending money (of one
    office's customers when ``office`` is given)."""
    key = (settings.database_url, today, months, office)
    version = await _ledger_version()
    with _cache_lock:
        cached = _cache.get(key)
    if cached and cached[0] > time.monotonic() and cached[1] == version:
        return cached[2]
    periods = last_months(today, months)
    (first_year, first_month), (last_year, last_month) = periods[0], periods[-1]
    rows = await Charge.raw(
        "SELECT service, year, month, SUM(paid) AS received, "  # noqa: S608
        "SUM(CASE WHEN paid < amount THEN amount - paid ELSE 0 END) AS pending "
        "FROM billing_charges WHERE state = 'billed' AND year BETWEEN {} AND {} "
        "AND year * 100 + month BETWEEN {} AND {}"
        + (" AND customer IN (SELECT id FROM customers WHERE office = {})" if office else "")
        + " GROUP BY service, year, month",
        first_year,
        last_year,
        first_year * 100 + first_month,
        last_year * 100 + last_month,
        *([office] if office else []),
    )
    found = {(r["service"], r["year"], r["month"]): r for r in rows}
    empty = {"received": 0, "pending": 0}
    result = {
        service: [
            MonthFigures(
                year,
                month,
                int(found.get((service, year, month), empty)["received"] or 0),
                int(found.get((service, year, month), empty)["pending"] or 0),
            )
            for year, month in periods
        ]
        for service in SERVICES
    }
    with _cache_lock:
        _cache[key] = (time.monotonic() + CACHE_SECONDS, version, result)
    return result


# -- drawing --------------------------------------------------------------------------------


def axis_ticks(value: int, *, count: int = 4) -> list[int]:
    """0 and about ``count`` round steps (1, 2, 2.5 or 5 times a power of ten) up to at least
    ``value``."""
    if value <= 0:
        return [0, 100]
    raw = value / count
    magnitude = 10 ** (len(str(int(raw))) - 1)
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw <= m * magnitude)
    steps = -(-value // step)
    return [int(step * i) for i in range(int(steps) + 1)]


def _compact_money(minor: int, currency: str) -> str:
    return format_compact_currency(
        minor / 100, currency, locale=i18n.current_locale(), fraction_digits=1
    )


def month_short(year: int, month: int) -> str:
    return i18n.month_name(month, "abbreviated").rstrip(".").capitalize()


def collections_chart(figures: list[MonthFigures], *, title: str, currency: str) -> Markup:
    """A stacked bar per month: received below, pending above."""
    width, height = 640, 270
    left, right, top, bottom = 70, 10, 34, 42
    plot_w, plot_h = width - left - right, height - top - bottom
    ticks = axis_ticks(max((f.charged for f in figures), default=0))
    top_value = ticks[-1]
    slot = plot_w / max(len(figures), 1)
    bar = slot * 0.64
    y = lambda v: top + plot_h - plot_h * v / top_value  # noqa: E731

    parts = [
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}" class="chart" xmlns="http://www.w3.org/2000/svg" '
        'font-size="13" font-family="inherit">',
        f"<title>{escape(title)}</title>",
    ]
    for value in ticks:
        gy = y(value)
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{gy:.1f}" y2="{gy:.1f}" '
            f'stroke="{GRID_COLOUR}" stroke-opacity="0.35" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{gy + 4:.1f}" text-anchor="end" fill="currentColor">'
            f"{escape(_compact_money(value, currency))}</text>"
        )
    for i, f in enumerate(figures):
        x = left + i * slot + (slot - bar) / 2
        label = _("%(month)s: received %(received)s, pending %(pending)s",
                  month=f"{month_short(f.year, f.month)} {f.year}",
                  received=i18n.money(f.received, currency),
                  pending=i18n.money(f.pending, currency))  # fmt: skip
        parts.append(f"<g><title>{escape(label)}</title>")
        if f.received:
            parts.append(
                f'<rect x="{x:.1f}" y="{y(f.received):.1f}" width="{bar:.1f}" '
                f'height="{top + plot_h - y(f.received):.1f}" fill="{RECEIVED_COLOUR}"/>'
            )
        if f.pending:
            parts.append(
                f'<rect x="{x:.1f}" y="{y(f.charged):.1f}" width="{bar:.1f}" '
                f'height="{y(f.received) - y(f.charged):.1f}" fill="{PENDING_COLOUR}"/>'
            )
        parts.append("</g>")
        cx = x + bar / 2
        parts.append(
            f'<text x="{cx:.1f}" y="{top + plot_h + 17}" text-anchor="middle" '
            f'fill="currentColor">{escape(month_short(f.year, f.month))}</text>'
        )
        if i == 0 or f.month == 1:
            parts.append(
                f'<text x="{cx:.1f}" y="{top + plot_h + 33}" text-anchor="middle" '
                f'fill="currentColor" font-size="11">{f.year}</text>'
            )
    legend = ((RECEIVED_COLOUR, _("Received")), (PENDING_COLOUR, _("Pending")))
    lx = left
    for colour, text in legend:
        parts.append(f'<rect x="{lx}" y="8" width="14" height="14" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 20}" y="20" fill="currentColor">{escape(text)}</text>')
        lx += 30 + 9 * len(text)
    parts.append("</svg>")
    # Every text above went through escape(); the rest is numbers and constants.
    return Markup("".join(parts))  # noqa: S704


def status_chart(counts: dict[str, dict[str, int]], *, title: str) -> Markup:
    """One horizontal bar per service, split by connection status."""
    services = [s for s in SERVICES if s in counts]
    width, row_h, top, left, right = 640, 44, 34, 110, 10
    height = top + row_h * len(services) + 8
    biggest = max((sum(counts[s].values()) for s in services), default=0) or 1
    scale = (width - left - right) / biggest
    parts = [
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}" class="chart" xmlns="http://www.w3.org/2000/svg" '
        'font-size="13" font-family="inherit">',
        f"<title>{escape(title)}</title>",
    ]
    for row, service in enumerate(services):
        y = top + row * row_h
        parts.append(
            f'<text x="{left - 8}" y="{y + 20}" text-anchor="end" fill="currentColor">'
            f"{escape(service_label(service))}</text>"
        )
        x = float(left)
        for status in STATUSES:
            n = counts[service].get(status, 0)
            if not n:
                continue
            w = n * scale
            label = f"{service_label(service)}, {status_label(status)}: {i18n.number(n)}"
            parts.append(
                f'<g><title>{escape(label)}</title><rect x="{x:.1f}" y="{y}" width="{w:.1f}" '
                f'height="28" fill="{STATUS_COLOURS[status]}"/></g>'
            )
            text = i18n.number(n)
            if w > 9 * len(text) + 8:
                parts.append(
                    f'<text x="{x + w / 2:.1f}" y="{y + 19}" text-anchor="middle" '
                    f'fill="#ffffff">{escape(text)}</text>'
                )
            x += w
    lx = left
    for status in STATUSES:
        text = status_label(status)
        parts.append(
            f'<rect x="{lx}" y="8" width="14" height="14" fill="{STATUS_COLOURS[status]}"/>'
        )
        parts.append(f'<text x="{lx + 20}" y="20" fill="currentColor">{escape(text)}</text>')
        lx += 34 + 8 * len(text)
    parts.append("</svg>")
    # Every text above went through escape(); the rest is numbers and constants.
    return Markup("".join(parts))  # noqa: S704


# -- the dashboard ---------------------------------------------------------------------------


async def dashboard_charts(
    settings: Settings,
    *,
    connections: dict[str, dict[str, int]] | None = None,
    office: str = "",
) -> dict[str, Any]:
    """What ``dashboard/_charts.html`` draws. ``connections`` ({service: {status: n}}) may be
    passed when the caller counted them already; ``office`` limits the figures to one office."""
    today = clock.today(settings.tz)
    figures = await collections(settings, today, office=office)
    counts = (
        connections if connections is not None else await customers.connection_counts(office=office)
    )
    money = []
    for service in SERVICES:
        title = _("%(service)s: money of the last 12 months' charges, received and pending",
                  service=service_label(service))  # fmt: skip
        money.append(
            {
                "service": service,
                "title": title,
                "svg": collections_chart(figures[service], title=title, currency=settings.currency),
                "months": figures[service],
            }
        )
    title = _("Connections by status")
    return {
        "collections": money,
        "statuses": {"title": title, "svg": status_chart(counts, title=title), "counts": counts},
    }
