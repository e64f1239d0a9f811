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
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import xlsxwriter
from babel.numbers import get_currency_symbol
from xlsxwriter.utility import xl_rowcol_to_cell

from appliance import i18n
from appliance.i18n import gettext as _
from appliance.reports.columns import Column, Heading, Totals, cell_value

log = logging.getLogger(__name__)

HEADER_ROW = 4  # rows 0-2 hold the heading, row 3 stays blank
MAX_WIDTH = 45


def _excel_amount(minor: int) -> float:
    # Minor units become currency units only here: a spreadsheet cell holds a binary double.
    return float(Decimal(minor).scaleb(-2))


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
            "text": self.book.add_format({"valign": "top"}),
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

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        sheet, formats, widths = self.sheet, self.formats, self.widths
        for row in rows:
            self.totals.add(row)
            for col, column in enumerate(self.columns):
                value = cell_value(row, column)
                kind = column.kind
                if value is None or value == "":
                    sheet.write_blank(self.row, col, None, formats[kind])
                elif kind == "money":
                    sheet.write_number(self.row, col, _excel_amount(value), formats[kind])
                elif kind == "date":
                    sheet.write_datetime(
                        self.row, col, dt.datetime.combine(value, dt.time()), formats[kind]
                    )
                elif kind == "count":
                    sheet.write_number(self.row, col, value, formats[kind])
                else:
                    text = str(value)
                    sheet.write_string(self.row, col, text, formats[kind])
                    if len(text) >= widths[col]:
                        widths[col] = min(len(text) + 1, MAX_WIDTH)
            self.row += 1
            self.rows_done += 1

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
