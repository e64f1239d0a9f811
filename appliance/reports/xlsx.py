"""The Excel writer: rows streamed into an .xlsx file with flat memory.

XlsxWriter's ``constant_memory`` mode writes each row to a temporary file as soon as the next
one starts, so a 20,000-row report costs as little memory as a 20-row one. Cells are typed:
amounts are numbers in a currency format, payment dates are dates, counts are integers, and
the totals row holds SUM formulas with their values cached, so a reader that does not
recalculate (openpyxl, a phone preview) still sees the totals.
"""

from __future__ import annotations

import datetime as dt
import logging
import operator
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import xlsxwriter
from babel.numbers import get_currency_symbol
from xlsxwriter.utility import xl_rowcol_to_cell

from appliance import i18n
from appliance.i18n import gettext as _
from appliance.plans.service import service_label
from appliance.reports.columns import (
    Column,
    Heading,
    Totals,
    invoices_text,
    mode_label,
    opening_label,
    status_label,
)

log = logging.getLogger(__name__)

HEADER_ROW = 4  # rows 0-2 hold the heading, row 3 stays blank
MAX_WIDTH = 45


EXCEL_EPOCH = dt.date(1899, 12, 30).toordinal()  # day 0 of Excel's 1900 date system
_ALWAYS = frozenset({"crf", "name", "charged", "paid"})  # keys every row dict holds


def _excel_amount(minor: int) -> float:
    # Minor units become currency units only here: a spreadsheet cell holds a binary double.
    # Dividing two integers rounds once, to the double nearest the exact amount.
    return minor / 100


def _getter(key: str) -> Any:
    return lambda row: row.get(key)


class XlsxReport:
    """Write a report row by row: ``add(rows)`` any number of times, then ``close()``."""

    def __init__(
        self, path: Path, *, heading: Heading, columns: list[Column], currency: str
    ) -> None:
        self.path = path
        self.columns = columns
        self.totals = Totals()
        self.book = xlsxwriter.Workbook(
            str(path),
            {
                "constant_memory": True,
                "tmpdir": str(path.parent),
                "strings_to_numbers": False,
                "strings_to_formulas": False,
                "strings_to_urls": False,
            },
        )
        self.book.set_properties({"title": heading.title, "company": heading.office})
        self.sheet = self.book.add_worksheet(_("Report")[:31])
        symbol = get_currency_symbol(currency, locale=i18n.current_locale())
        money = f'"{symbol}" #,##0.00;-"{symbol}" #,##0.00'
        date = "dd/mm/yyyy" if i18n.current_locale() == "pt_BR" else "yyyy-mm-dd"
        self.formats = {
            # Text cells keep the default format: every data row is one line high, so the top
            # alignment the others carry would not show, and a format costs a lookup a cell.
            "text": None,
            "money": self.book.add_format({"num_format": money, "valign": "top"}),
            "date": self.book.add_format({"num_format": date, "valign": "top"}),
            "count": self.book.add_format({"num_format": "0", "valign": "top"}),
        }
        bold = {"bold": True, "top": 1}
        self.total_formats = {
            "text": self.book.add_format(bold),
            "money": self.book.add_format({**bold, "num_format": money}),
            "date": self.book.add_format(bold),
            "count": self.book.add_format({**bold, "num_format": "0"}),
        }
        self.widths = [len(c.label) + 2 for c in columns]
        self._plan = self._cell_plan()
        self.row = HEADER_ROW + 1
        self.rows_done = 0
        self._write_heading(heading)

    def _write_heading(self, heading: Heading) -> None:
        sheet = self.sheet
        sheet.write_string(0, 0, heading.office, self.book.add_format({"bold": True, "size": 14}))
        sheet.write_string(1, 0, heading.title, self.book.add_format({"bold": True}))
        sheet.write_string(2, 0, f"{heading.filters} · {heading.generated}")
        head = self.book.add_format(
            {"bold": True, "bg_color": "#DDE4EE", "bottom": 1, "text_wrap": True, "valign": "top"}
        )
        for col, column in enumerate(self.columns):
            sheet.write_string(HEADER_ROW, col, column.label, head)
        sheet.freeze_panes(HEADER_ROW + 1, 0)

    def _cell_plan(self) -> list[tuple[int, str, Any, Any]]:
        """(column, kind, value getter, format) per column, the labels looked up once."""
        statuses = {s: status_label(s) for s in ("active", "inactive", "suspended")}
        services = {s: service_label(s) for s in ("cable", "broadband")}
        modes = {m: mode_label(m) for m in ("cash", "online")}

        opening = opening_label()

        def paid_on(row: dict[str, Any]) -> Any:
            payments = row.get("payments")
            return payments[-1][0] if payments else None

        def invoices(row: dict[str, Any]) -> Any:
            payments = row.get("payments")
            if not payments:
                return opening if row.get("opening") else None
            return payments[0][1] if len(payments) == 1 else invoices_text(row)

        def payment_modes(row: dict[str, Any]) -> Any:
            labels: list[str] = []
            for _when, _number, mode in row.get("payments") or ():
                label = modes.get(mode) or mode_label(mode)
                if label not in labels:
                    labels.append(label)
            return ", ".join(labels)

        def lookup(key: str, labels: dict[str, str], fallback: Any) -> Any:
            return lambda row: labels.get(row[key]) or fallback(row[key])

        plan = []
        for col, column in enumerate(self.columns):
            key = column.key
            if key == "paid_on":
                get = paid_on
            elif key == "invoices":
                get = invoices
            elif key == "modes":
                get = payment_modes
            elif key == "status":
                get = lookup(key, statuses, status_label)
            elif key == "service":
                get = lookup(key, services, service_label)
            else:
                get = operator.itemgetter(key) if key in _ALWAYS else _getter(key)
            plan.append((col, column.kind, get, self.formats[column.kind]))
        return plan

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        # Empty cells are left out; amounts become currency units and dates Excel serial
        # numbers here, in the same cells XlsxWriter's write_datetime would make.
        write_string, write_number = self.sheet.write_string, self.sheet.write_number
        widths, plan, add_totals = self.widths, self._plan, self.totals.add
        row_num = self.row
        for row in rows:
            add_totals(row)
            for col, kind, get, fmt in plan:
                value = get(row)
                if value is None or value == "":
                    continue
                if kind == "text":
                    if value.startswith("<r>") and value.endswith("</r>"):
                        # In constant_memory mode XlsxWriter copies such a string into the
                        # sheet as rich-text XML, unescaped; as rich text fragments it is text.
                        self.sheet.write_rich_string(row_num, col, value[:1], value[1:2], value[2:])
                    else:
                        write_string(row_num, col, value, fmt)
                    if len(value) >= widths[col]:
                        widths[col] = min(len(value) + 1, MAX_WIDTH)
                elif kind == "money":
                    write_number(row_num, col, value / 100, fmt)
                elif kind == "date":
                    write_number(row_num, col, value.toordinal() - EXCEL_EPOCH, fmt)
                else:
                    write_number(row_num, col, value, fmt)
            row_num += 1
        self.rows_done += row_num - self.row
        self.row = row_num

    def abort(self) -> None:
        """Give up (after an error): close the workbook's temporary files."""
        try:
            self.book.close()
        except Exception:
            log.warning("could not close an aborted workbook", exc_info=True)

    def close(self) -> Totals:
        """Write the totals row, filters and widths; finish the file."""
        first, last = HEADER_ROW + 1, self.row - 1
        totals = self.totals.as_dict()
        sheet = self.sheet
        sheet.write_string(
            self.row,
            0,
            i18n.ngettext(
                "Total: %(num)s row",
                "Total: %(num)s rows",
                totals["count"],
                num=i18n.number(totals["count"]),
            ),
            self.total_formats["text"],
        )
        for col, column in enumerate(self.columns):
            if col == 0:
                continue
            fmt = self.total_formats[column.kind]
            if column.key in ("charged", "paid", "due", "months_pending"):
                value = totals[column.key]
                cached = value if column.kind == "count" else _excel_amount(value)
                if last >= first:
                    cells = f"{xl_rowcol_to_cell(first, col)}:{xl_rowcol_to_cell(last, col)}"
                    sheet.write_formula(self.row, col, f"=SUM({cells})", fmt, cached)
                else:
                    sheet.write_number(self.row, col, cached, fmt)
            else:
                sheet.write_blank(self.row, col, None, fmt)
        for col, column in enumerate(self.columns):
            width = max(self.widths[col], column.width)
            if column.kind == "money":
                width = max(width, 14)
            sheet.set_column(col, col, width)
        sheet.autofilter(HEADER_ROW, 0, max(last, HEADER_ROW), len(self.columns) - 1)
        sheet.set_landscape()
        sheet.set_paper(9)  # A4
        sheet.repeat_rows(HEADER_ROW)
        sheet.fit_to_pages(1, 0)
        self.book.close()
        return self.totals
