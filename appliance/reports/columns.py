"""What a payment report is: its filters, its columns, its heading and its running totals.

The row source (:mod:`appliance.reports.rows`) yields plain dicts; both writers
(:mod:`appliance.reports.xlsx`, :mod:`appliance.reports.pdf`) read them through the columns
defined here, so the Excel file and the PDF always show the same things in the same order.

A row dict holds: ``service``, ``crf``, ``name``, ``house``, ``area``, ``mobile``, ``email``,
``status``, ``plan`` (text); ``charged``, ``paid`` and, in unpaid reports, ``due`` (integer minor
units) and ``months_pending``; ``payments``: a list of ``(date, invoice number, mode)`` of the
payments allocated to the month's charge, oldest first.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from babel.dates import format_skeleton

from appliance import i18n
from appliance.i18n import gettext as _
from appliance.plans.service import service_label

SERVICES = ("cable", "broadband", "both")
CLASSIFICATIONS = ("paid", "unpaid")
FILE_TYPES = ("xlsx", "pdf")


@dataclass(frozen=True)
class ReportFilter:
    """A validated request: which charges the report lists and in which format."""

    service: str
    year: int
    month: int
    classification: str
    file_type: str
    office: str = ""  # central: one office's customers; '' for all

    @property
    def services(self) -> tuple[str, ...]:
        return ("cable", "broadband") if self.service == "both" else (self.service,)

    @property
    def period(self) -> dt.date:
        return dt.date(self.year, self.month, 1)

    @property
    def unpaid(self) -> bool:
        return self.classification == "unpaid"


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str  # text, money, date, count
    width: float  # Excel column width, in characters
    pdf_chars: int  # PDF column width in characters of the monospaced font, at least
    pdf_share: float = 0.0  # share of the characters the fixed columns leave over


def columns_for(report: ReportFilter) -> list[Column]:
    """The report's columns, labelled in the current language."""
    cols = [
        Column("crf", _("CRF"), "text", 11, 9),
        Column("name", _("Customer"), "text", 28, 16, 0.4),
        Column("house", _("House"), "text", 8, 6),
        Column("area", _("Area"), "text", 16, 10, 0.22),
        Column("mobile", _("Mobile"), "text", 14, 13),
        Column("email", _("E-mail"), "text", 26, 16, 0.38),
    ]
    if report.service == "both":
        cols.append(Column("service", _("Service"), "text", 11, 11))
    cols += [
        Column("status", _("Status"), "text", 10, 9),
        Column("plan", _("Plan"), "text", 14, 12),
        Column("charged", _("Charged"), "money", 12, 12),
        Column("paid", _("Paid"), "money", 12, 12),
        Column("paid_on", _("Paid on"), "date", 11, 10),
        Column("invoices", _("Invoice(s)"), "text", 16, 14),
        Column("modes", _("Mode"), "text", 9, 8),
    ]
    if report.unpaid:
        cols += [
            Column("due", _("Amount due"), "money", 12, 12),
            Column("months_pending", _("Months pending"), "count", 9, 9),
        ]
    return cols


def opening_label() -> str:
    """What stands for the invoice of a month paid before billing began on the box."""
    return _("Paid before billing began")


def mode_label(mode: str) -> str:
    return {"cash": _("Cash"), "online": _("Online")}.get(mode, mode)


def status_label(status: str) -> str:
    return {
        "active": _("Active"),
        "inactive": _("Inactive"),
        "suspended": _("Suspended"),
    }.get(status, status)


def month_label(year: int, month: int) -> str:
    """``2026, 11`` -> "November 2026" / "novembro de 2026" in the current language."""
    return format_skeleton("yMMMM", dt.date(year, month, 1), locale=i18n.current_locale())


def service_choice_label(service: str) -> str:
    return _("Cable TV and broadband") if service == "both" else service_label(service)


def classification_label(classification: str) -> str:
    return {"paid": _("Paid"), "unpaid": _("Unpaid")}.get(classification, classification)


def file_type_label(file_type: str) -> str:
    return {"xlsx": _("Excel"), "pdf": _("PDF")}.get(file_type, file_type)


@dataclass(frozen=True)
class Heading:
    """The block above the table: office, report title, filters and generation time."""

    office: str
    title: str
    filters: str
    generated: str

    @classmethod
    def of(cls, report: ReportFilter, *, office: str, generated_at: dt.datetime, tz: Any):
        title = (
            _("Unpaid charges report") if report.unpaid else _("Paid charges report")
        ) + f" · {month_label(report.year, report.month)}"
        filters = _(
            "Service: %(service)s · Month: %(month)s · Classification: %(kind)s",
            service=service_choice_label(report.service),
            month=month_label(report.year, report.month),
            kind=classification_label(report.classification),
        )
        generated = _("Generated on %(when)s", when=i18n.datetime(generated_at, tz, "medium"))
        return cls(office=office, title=title, filters=filters, generated=generated)


@dataclass
class Totals:
    """Running totals, kept while rows stream past."""

    count: int = 0
    charged: int = 0
    paid: int = 0
    due: int = 0
    months_pending: int = 0
    by_service: dict[str, int] = field(default_factory=dict)

    def add(self, row: dict[str, Any]) -> None:
        self.count += 1
        self.charged += row["charged"]
        self.paid += row["paid"]
        self.due += row.get("due", 0)
        self.months_pending += row.get("months_pending", 0)
        self.by_service[row["service"]] = self.by_service.get(row["service"], 0) + 1

    def as_dict(self) -> dict[str, int]:
        return {
            "count": self.count,
            "charged": self.charged,
            "paid": self.paid,
            "due": self.due,
            "months_pending": self.months_pending,
        }


def cell_value(row: dict[str, Any], column: Column) -> Any:
    """The value of one cell, typed: str, int (minor units or a count) or a date (or None)."""
    key = column.key
    if key == "paid_on":
        payments = row.get("payments") or ()
        return payments[-1][0] if payments else None
    if key == "invoices":
        return invoices_text(row)
    if key == "modes":
        modes: list[str] = []
        for _when, _number, mode in row.get("payments") or ():
            label = mode_label(mode)
            if label not in modes:
                modes.append(label)
        return ", ".join(modes)
    if key == "status":
        return status_label(row["status"])
    if key == "service":
        return service_label(row["service"])
    return row.get(key, "")


def invoices_text(row: dict[str, Any]) -> str:
    """Invoice numbers; when a month was paid in several payments, each with its date."""
    payments = row.get("payments") or ()
    if not payments and row.get("opening"):
        return opening_label()
    if len(payments) == 1:
        return payments[0][1]
    return "; ".join(f"{number} ({i18n.date(when, 'short')})" for when, number, _m in payments)


def download_name(report: ReportFilter, office_code: str) -> str:
    """A file name like ``MM-unpaid-broadband-2026-11.xlsx`` (ASCII, from validated values)."""
    return (
        f"{office_code}-{report.classification}-{report.service}-"
        f"{report.year:04d}-{report.month:02d}.{report.file_type}"
    )
