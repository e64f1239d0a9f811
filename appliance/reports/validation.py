"""Checking what the admin asked for before any work starts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from typing import Any

from appliance.errors import ValidationFailed
from appliance.i18n import gettext as _
from appliance.reports.columns import CLASSIFICATIONS, FILE_TYPES, SERVICES, ReportFilter

FIRST_YEAR = 2000
LAST_YEAR = 9999


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def clean_request(
    data: Mapping[str, Any], *, today: dt.date, offices: Collection[str] | None = None
) -> ReportFilter:
    """The validated filters, or :class:`ValidationFailed` with a message per field.

    ``today`` is the office's day: the current month may be reported (it is partly paid), a
    month that has not begun may not. ``offices`` (central only) are the office codes the
    report may be limited to; on a box the office filter is ignored.
    """
    errors: dict[str, str] = {}
    office = str(data.get("office") or "").strip().upper() if offices is not None else ""
    if office and office not in offices:
        errors["office"] = _("Choose one of the offices, or all of them.")
    service = str(data.get("service") or "").strip()
    if service not in SERVICES:
        errors["service"] = _("Choose cable TV, broadband or both.")
    classification = str(data.get("classification") or "").strip()
    if classification not in CLASSIFICATIONS:
        errors["classification"] = _("Choose paid or unpaid.")
    file_type = str(data.get("file_type") or "").strip().lower()
    if file_type not in FILE_TYPES:
        errors["file_type"] = _("Choose PDF or Excel.")
    year = _int(data.get("year"))
    month = _int(data.get("month"))
    if year is None or not FIRST_YEAR <= year <= LAST_YEAR:
        errors["year"] = _(
            "Enter a year from %(first)s to %(last)s.", first=FIRST_YEAR, last=today.year
        )
    if month is None or not 1 <= month <= 12:
        errors["month"] = _("Choose a month from 1 to 12.")
    elif year is not None and "year" not in errors and (year, month) > (today.year, today.month):
        errors["month"] = _("This month has not begun yet: choose this month or an earlier one.")
    if errors:
        raise ValidationFailed(errors)
    assert year is not None and month is not None
    return ReportFilter(
        service=service,
        year=year,
        month=month,
        classification=classification,
        file_type=file_type,
        office=office,
    )
