"""The Excel writer: rows streamed into an .xlsx file with flat memory.

The workbook is written here, part by part, rather than through a spreadsheet library: for a
20,000-row report XlsxWriter's per-cell bookkeeping was ~60% of the build (py-spy), and a row
here is one joined string. Rows go to a temporary file as they come, so a 20,000-row report
costs as little memory as a 20-row one; ``close()`` then writes the package (zip) with the
sheet's head (its size and column widths, known only at the end) before the rows.

The file is the one XlsxWriter made for this report, cell for cell: inline strings, the same
cell formats, frozen header, filter, print titles, landscape A4 fitted to one page wide. Cells
are typed: amounts are numbers in a currency format, payment dates are dates, counts are
integers, and the totals row holds SUM formulas with their values cached, so a reader that does
not recalculate (openpyxl, a phone preview) still sees the totals.
"""

from __future__ import annotations

import datetime as dt
import logging
import operator
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from babel.numbers import get_currency_symbol

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

HEADER_ROW = 4  # rows 0-2 hold the heading, row 3 stays blank (0-based, as below)
MAX_WIDTH = 45
MAX_SHEET_NAME = 31

EXCEL_EPOCH = dt.date(1899, 12, 30).toordinal()  # day 0 of Excel's 1900 date system
_ALWAYS = frozenset({"crf", "name", "charged", "paid"})  # keys every row dict holds

# Cell formats: their index in styles.xml's cellXfs (see _styles).
PLAIN, OFFICE, TITLE, HEAD, MONEY, DATE, COUNT, TOTAL, TOTAL_MONEY, TOTAL_COUNT = range(10)
_DATA_STYLE = {"text": PLAIN, "money": MONEY, "date": DATE, "count": COUNT}
_TOTAL_STYLE = {"text": TOTAL, "money": TOTAL_MONEY, "date": TOTAL, "count": TOTAL_COUNT}

# Characters XML 1.0 cannot hold, and text that Excel would read as one of its own escapes
# (``_xHHHH_``): both written as Excel's escapes, which it turns back into the text.
_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|_x[0-9A-Fa-f]{4}_")

NS = "http://schemas.openxmlformats.org"
MAIN = f"{NS}/spreadsheetml/2006/main"
RELS = f"{NS}/officeDocument/2006/relationships"
DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'


def _excel_amount(minor: int) -> float:
    # Minor units become currency units only here: a spreadsheet cell holds a binary double.
    # Dividing two integers rounds once, to the double nearest the exact amount.
    return minor / 100


def _getter(key: str) -> Any:
    return lambda row: row.get(key)


def _unsafe(match: re.Match[str]) -> str:
    text = match.group()
    return f"_x{ord(text):04X}_" if len(text) == 1 else "_x005F" + text


def inline_string(value: str) -> str:
    """The ``<is>`` element of a text cell holding ``value``."""
    if _UNSAFE.search(value):
        value = _UNSAFE.sub(_unsafe, value)
    value = escape(value)
    if value[:1].isspace() or value[-1:].isspace():
        return f'<is><t xml:space="preserve">{value}</t></is>'
    return f"<is><t>{value}</t></is>"


def column_letters(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def column_width(chars: float) -> float:
    """A width in characters as Excel stores it (the default font's digit 7 px wide, 5 px of
    padding, in 1/256ths), the value XlsxWriter's ``set_column`` writes."""
    return int((chars * 7 + 5) / 7 * 256) / 256


def sheet_reference(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


class XlsxReport:
    """Write a report row by row: ``add(rows)`` any number of times, then ``close()``."""

    def __init__(
        self, path: Path, *, heading: Heading, columns: list[Column], currency: str
    ) -> None:
        self.path = path
        self.columns = columns
        self.heading = heading
        self.totals = Totals()
        self.sheet_name = _("Report")[:MAX_SHEET_NAME]
        symbol = get_currency_symbol(currency, locale=i18n.current_locale())
        self.money_format = f'"{symbol}" #,##0.00;-"{symbol}" #,##0.00'
        self.date_format = "dd/mm/yyyy" if i18n.current_locale() == "pt_BR" else "yyyy-mm-dd"
        self.letters = [column_letters(col) for col in range(len(columns))]
        self.widths = [len(c.label) + 2 for c in columns]
        self._plan = self._cell_plan()
        # The sheet's rows, as XML, until close() puts them in the package.
        self._rows = tempfile.TemporaryFile(dir=path.parent, prefix=".xlsx-")  # noqa: SIM115
        self.row = HEADER_ROW + 1
        self.rows_done = 0
        self._write_heading(heading)

    def _cell(self, row: int, col: int, value: Any, style: int) -> str:
        """One cell's XML: text, a number, or (``None``) an empty cell with its format."""
        ref = f"{self.letters[col]}{row + 1}"
        mark = f' s="{style}"' if style else ""
        if value is None:
            return f'<c r="{ref}"{mark}/>'
        if isinstance(value, str):
            return f'<c r="{ref}"{mark} t="inlineStr">{inline_string(value)}</c>'
        return f'<c r="{ref}"{mark}><v>{value!r}</v></c>'

    def _put_row(self, row: int, cells: Iterable[str]) -> None:
        self._rows.write(f'<row r="{row + 1}">{"".join(cells)}</row>'.encode())

    def _write_heading(self, heading: Heading) -> None:
        self._put_row(0, [self._cell(0, 0, heading.office, OFFICE)])
        self._put_row(1, [self._cell(1, 0, heading.title, TITLE)])
        self._put_row(2, [self._cell(2, 0, f"{heading.filters} · {heading.generated}", PLAIN)])
        self._put_row(
            HEADER_ROW,
            [self._cell(HEADER_ROW, col, c.label, HEAD) for col, c in enumerate(self.columns)],
        )

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
            plan.append((col, column.kind, get, _DATA_STYLE[column.kind]))
        return plan

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        # The report's hot path: _cell's XML written inline, one string per batch. Empty cells
        # are left out; amounts become currency units (see _excel_amount) and dates Excel
        # serial numbers here.
        widths, plan, add_totals, letters = self.widths, self._plan, self.totals.add, self.letters
        row_num = self.row
        out: list[str] = []
        for row in rows:
            add_totals(row)
            r = row_num + 1
            out.append(f'<row r="{r}">')
            for col, kind, get, style in plan:
                value = get(row)
                if value is None or value == "":
                    continue
                if kind == "text":
                    out.append(f'<c r="{letters[col]}{r}" t="inlineStr">{inline_string(value)}</c>')
                    if len(value) >= widths[col]:
                        widths[col] = min(len(value) + 1, MAX_WIDTH)
                    continue
                if kind == "money":
                    value = value / 100
                elif kind == "date":
                    value = value.toordinal() - EXCEL_EPOCH
                out.append(f'<c r="{letters[col]}{r}" s="{style}"><v>{value!r}</v></c>')
            out.append("</row>")
            row_num += 1
        self._rows.write("".join(out).encode())
        self.rows_done += row_num - self.row
        self.row = row_num

    def abort(self) -> None:
        """Give up (after an error): drop the rows written so far."""
        self._rows.close()

    def close(self) -> Totals:
        """Write the totals row and the package; return the totals."""
        first, last = HEADER_ROW + 1, self.row - 1
        totals = self.totals.as_dict()
        label = i18n.ngettext(
            "Total: %(num)s row",
            "Total: %(num)s rows",
            totals["count"],
            num=i18n.number(totals["count"]),
        )
        cells = [self._cell(self.row, 0, label, TOTAL)]
        for col, column in enumerate(self.columns[1:], start=1):
            style = _TOTAL_STYLE[column.kind]
            if column.key not in ("charged", "paid", "due", "months_pending"):
                cells.append(self._cell(self.row, col, None, style))
                continue
            value = totals[column.key]
            cached = value if column.kind == "count" else _excel_amount(value)
            if last < first:
                cells.append(self._cell(self.row, col, cached, style))
                continue
            letter = self.letters[col]
            cells.append(
                f'<c r="{letter}{self.row + 1}" s="{style}">'
                f"<f>SUM({letter}{first + 1}:{letter}{last + 1})</f><v>{cached!r}</v></c>"
            )
        self._put_row(self.row, cells)
        try:
            self._write_package(max(last, HEADER_ROW))
        finally:
            self._rows.close()
        return self.totals

    # -- the package ------------------------------------------------------------------------

    def _write_package(self, filter_last: int) -> None:
        last_col = self.letters[-1]
        filtered = f"$A${HEADER_ROW + 1}:${last_col}${filter_last + 1}"
        with zipfile.ZipFile(self.path, "w", zipfile.ZIP_DEFLATED) as package:
            package.writestr("[Content_Types].xml", _content_types())
            package.writestr("_rels/.rels", _package_relationships())
            package.writestr("docProps/app.xml", _app_properties(self.heading.office))
            package.writestr("docProps/core.xml", _core_properties(self.heading.title))
            package.writestr("xl/workbook.xml", self._workbook(filtered))
            package.writestr("xl/_rels/workbook.xml.rels", _workbook_relationships())
            package.writestr("xl/styles.xml", _styles(self.money_format, self.date_format))
            with package.open("xl/worksheets/sheet1.xml", "w") as sheet:
                sheet.write(self._sheet_head().encode())
                self._rows.seek(0)
                shutil.copyfileobj(self._rows, sheet, 1 << 20)
                tail = (
                    f'</sheetData><autoFilter ref="A{HEADER_ROW + 1}:{last_col}'
                    f'{filter_last + 1}"/><pageMargins left="0.7" right="0.7" top="0.75" '
                    'bottom="0.75" header="0.3" footer="0.3"/>'
                    '<pageSetup paperSize="9" fitToHeight="0" orientation="landscape"/>'
                    "</worksheet>"
                )
                sheet.write(tail.encode())

    def _workbook(self, filtered: str) -> str:
        sheet = sheet_reference(self.sheet_name)
        return (
            f'{DECLARATION}<workbook xmlns="{MAIN}" xmlns:r="{RELS}">'
            "<bookViews><workbookView/></bookViews><sheets>"
            f'<sheet name={quoteattr(self.sheet_name)} sheetId="1" r:id="rId1"/></sheets>'
            "<definedNames>"
            '<definedName name="_xlnm._FilterDatabase" localSheetId="0" hidden="1">'
            f"{escape(sheet)}!{filtered}</definedName>"
            '<definedName name="_xlnm.Print_Titles" localSheetId="0">'
            f"{escape(sheet)}!${HEADER_ROW + 1}:${HEADER_ROW + 1}</definedName>"
            '</definedNames><calcPr calcId="124519" fullCalcOnLoad="1"/></workbook>'
        )

    def _sheet_head(self) -> str:
        cols = []
        for col, column in enumerate(self.columns):
            width = max(self.widths[col], column.width)
            if column.kind == "money":
                width = max(width, 14)
            cols.append(
                f'<col min="{col + 1}" max="{col + 1}" width="{column_width(width)!r}" '
                'customWidth="1"/>'
            )
        top = HEADER_ROW + 1
        return (
            f'{DECLARATION}<worksheet xmlns="{MAIN}" xmlns:r="{RELS}">'
            '<sheetPr><pageSetUpPr fitToPage="1"/></sheetPr>'
            f'<dimension ref="A1:{self.letters[-1]}{self.row + 1}"/>'
            '<sheetViews><sheetView tabSelected="1" workbookViewId="0">'
            f'<pane ySplit="{top}" topLeftCell="A{top + 1}" activePane="bottomLeft" '
            'state="frozen"/><selection pane="bottomLeft"/></sheetView></sheetViews>'
            f'<sheetFormatPr defaultRowHeight="15"/><cols>{"".join(cols)}</cols><sheetData>'
        )


def _content_types() -> str:
    kinds = "application/vnd.openxmlformats-officedocument"
    parts = {
        "/docProps/app.xml": f"{kinds}.extended-properties+xml",
        "/docProps/core.xml": "application/vnd.openxmlformats-package.core-properties+xml",
        "/xl/styles.xml": f"{kinds}.spreadsheetml.styles+xml",
        "/xl/workbook.xml": f"{kinds}.spreadsheetml.sheet.main+xml",
        "/xl/worksheets/sheet1.xml": f"{kinds}.spreadsheetml.worksheet+xml",
    }
    overrides = "".join(
        f'<Override PartName="{name}" ContentType="{kind}"/>' for name, kind in parts.items()
    )
    return (
        f'{DECLARATION}<Types xmlns="{NS}/package/2006/content-types">'
        '<Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        f'<Default Extension="xml" ContentType="application/xml"/>{overrides}</Types>'
    )


def _relationships(targets: list[tuple[str, str]]) -> str:
    links = "".join(
        f'<Relationship Id="rId{n}" Type="{kind}" Target="{target}"/>'
        for n, (kind, target) in enumerate(targets, start=1)
    )
    return (
        f'{DECLARATION}<Relationships xmlns="{NS}/package/2006/relationships">{links}'
        "</Relationships>"
    )


def _package_relationships() -> str:
    return _relationships(
        [
            (f"{RELS}/officeDocument", "xl/workbook.xml"),
            (f"{NS}/package/2006/relationships/metadata/core-properties", "docProps/core.xml"),
            (f"{RELS}/extended-properties", "docProps/app.xml"),
        ]
    )


def _workbook_relationships() -> str:
    return _relationships(
        [(f"{RELS}/worksheet", "worksheets/sheet1.xml"), (f"{RELS}/styles", "styles.xml")]
    )


def _app_properties(company: str) -> str:
    return (
        f'{DECLARATION}<Properties xmlns="{NS}/officeDocument/2006/extended-properties">'
        f"<Application>CTVMS</Application><Company>{escape(company)}</Company></Properties>"
    )


def _core_properties(title: str) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f'{DECLARATION}<cp:coreProperties xmlns:cp="{NS}/package/2006/metadata/core-properties" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<dc:title>{escape(title)}</dc:title>"
        f'<dcterms:created xsi:type="dcterms:W3CDTF">{now}</dcterms:created>'
        f'<dcterms:modified xsi:type="dcterms:W3CDTF">{now}</dcterms:modified>'
        "</cp:coreProperties>"
    )


def _styles(money_format: str, date_format: str) -> str:
    """The report's ten cell formats, in the order of the constants PLAIN ... TOTAL_COUNT."""

    def font(extra: str = "", size: int = 11) -> str:
        return f'<font>{extra}<sz val="{size}"/><name val="Calibri"/><family val="2"/></font>'

    def xf(number: int, font_id: int, fill: int, border: int, align: str = "") -> str:
        applied = "".join(
            f' apply{name}="1"'
            for name, used in (
                ("NumberFormat", number),
                ("Font", font_id),
                ("Fill", fill),
                ("Border", border),
                ("Alignment", align),
            )
            if used
        )
        attributes = (
            f'numFmtId="{number}" fontId="{font_id}" fillId="{fill}" borderId="{border}" '
            f'xfId="0"{applied}'
        )
        return f"<xf {attributes}>{align}</xf>" if align else f"<xf {attributes}/>"

    top = '<alignment vertical="top"/>'
    cell_formats = [
        xf(0, 0, 0, 0),  # PLAIN
        xf(0, 1, 0, 0),  # OFFICE: bold, 14 pt
        xf(0, 2, 0, 0),  # TITLE: bold
        xf(0, 2, 2, 1, '<alignment vertical="top" wrapText="1"/>'),  # HEAD
        xf(164, 0, 0, 0, top),  # MONEY
        xf(165, 0, 0, 0, top),  # DATE
        xf(1, 0, 0, 0, top),  # COUNT ("0")
        xf(0, 2, 0, 2),  # TOTAL: bold, a line above
        xf(164, 2, 0, 2),  # TOTAL_MONEY
        xf(1, 2, 0, 2),  # TOTAL_COUNT
    ]
    line = '<color auto="1"/>'
    return (
        f'{DECLARATION}<styleSheet xmlns="{MAIN}">'
        f'<numFmts count="2"><numFmt numFmtId="164" formatCode={quoteattr(money_format)}/>'
        f'<numFmt numFmtId="165" formatCode={quoteattr(date_format)}/></numFmts>'
        f'<fonts count="3">{font()}{font("<b/>", 14)}{font("<b/>")}</fonts>'
        '<fills count="3"><fill><patternFill patternType="none"/></fill>'
        '<fill><patternFill patternType="gray125"/></fill>'
        '<fill><patternFill patternType="solid"><fgColor rgb="FFDDE4EE"/>'
        '<bgColor indexed="64"/></patternFill></fill></fills>'
        '<borders count="3"><border><left/><right/><top/><bottom/><diagonal/></border>'
        f'<border><left/><right/><top/><bottom style="thin">{line}</bottom><diagonal/></border>'
        f'<border><left/><right/><top style="thin">{line}</top><bottom/><diagonal/></border>'
        '</borders><cellStyleXfs count="1">'
        '<xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
        f'<cellXfs count="{len(cell_formats)}">{"".join(cell_formats)}</cellXfs>'
        '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
        '<dxfs count="0"/><tableStyles count="0"/></styleSheet>'
    )
