"""The Excel and PDF writers, fed plain row dicts: typed cells, frozen header, filter, totals;
the header on every PDF page and "page X of Y" across chunks."""

from __future__ import annotations

import datetime as dt
import re

import openpyxl
import pytest
from pypdf import PdfReader

from appliance import i18n
from appliance.reports.columns import Heading, ReportFilter, columns_for
from appliance.reports.pdf import CHARS, Grid, PdfReport, css_string, wrap
from appliance.reports.xlsx import XlsxReport
from tests.reports.test_readers import calc_csv

GENERATED = dt.datetime(2026, 11, 5, 13, 30, tzinfo=dt.UTC)
TZ = dt.UTC


def rows(n: int, *, unpaid: bool = False) -> list[dict]:
    out = []
    for i in range(n):
        payments = [(dt.date(2026, 10, 3 + i % 20), f"TS-2026-{i + 1:06d}", "cash")]
        if i % 3 == 2:
            payments.append((dt.date(2026, 10, 25), f"TS-2026-{i + 501:06d}", "online"))
        charged = 4990 + i
        row = {
            "service": "cable" if i % 2 == 0 else "broadband",
            "crf": f"TS{i + 1:06d}",
            "name": f"Customer Número {i + 1}",
            "house": str(i + 1),
            "area": "Centro",
            "mobile": f"0119{i:08d}",
            "email": f"c{i + 1}@example.com",
            "status": "active",
            "plan": "Básico",
            "charged": charged,
            "paid": charged // 2 if unpaid else charged,
            "payments": payments,
        }
        if unpaid:
            row["due"] = charged - charged // 2 + 1000
            row["months_pending"] = 2
        out.append(row)
    return out


def _report(classification="paid", service="both", file_type="xlsx"):
    return ReportFilter(service, 2026, 10, classification, file_type)


def write_xlsx(path, data, report):
    heading = Heading.of(report, office="Test Office", generated_at=GENERATED, tz=TZ)
    writer = XlsxReport(path, heading=heading, columns=columns_for(report), currency="BRL")
    for start in range(0, len(data), 7):
        writer.add(data[start : start + 7])
    return writer.close()


def test_xlsx_has_typed_cells_frozen_header_filter_widths_and_totals(tmp_path):
    path = tmp_path / "r.xlsx"
    data = rows(10, unpaid=True)
    with i18n.use_locale("en"):
        totals = write_xlsx(path, data, _report("unpaid"))
    assert totals.count == 10

    book = openpyxl.load_workbook(path)
    sheet = book.active
    assert sheet["A1"].value == "Test Office"
    assert "October 2026" in sheet["A2"].value
    assert "Unpaid" in sheet["A3"].value and "Generated on" in sheet["A3"].value
    header = [c.value for c in sheet[5]]
    assert header[:6] == ["CRF", "Customer", "House", "Area", "Mobile", "E-mail"]
    assert header[-2:] == ["Amount due", "Months pending"]
    assert sheet.freeze_panes == "A6"
    assert sheet.auto_filter.ref == "A5:P15"
    col = {name: i + 1 for i, name in enumerate(header)}

    first = sheet[6]
    charged = first[col["Charged"] - 1]
    assert charged.value == pytest.approx(49.90) and isinstance(charged.value, float)
    assert "#,##0.00" in charged.number_format and "R$" in charged.number_format
    paid_on = first[col["Paid on"] - 1]
    assert paid_on.value == dt.datetime(2026, 10, 3) and paid_on.is_date
    assert first[col["Mobile"] - 1].value == "011900000000"  # text: the leading zero stays
    assert first[col["Months pending"] - 1].value == 2
    # Two payments: the last date is the cell's, each invoice keeps its own date.
    third = sheet[8]
    assert third[col["Paid on"] - 1].value == dt.datetime(2026, 10, 25)
    assert third[col["Invoice(s)"] - 1].value.count("TS-2026-") == 2
    assert third[col["Mode"] - 1].value == "Cash, Online"

    total_row = sheet[16]
    assert total_row[0].value == "Total: 10 rows"
    assert total_row[col["Charged"] - 1].value == "=SUM(J6:J15)"
    assert sheet.column_dimensions["B"].width >= 20
    assert sheet.column_dimensions["F"].width >= len("c10@example.com")

    cached = openpyxl.load_workbook(path, data_only=True).active
    expected = sum(r["charged"] for r in data) / 100
    assert cached.cell(16, col["Charged"]).value == pytest.approx(expected)
    assert cached.cell(16, col["Amount due"]).value == pytest.approx(
        sum(r["due"] for r in data) / 100
    )
    assert cached.cell(16, col["Months pending"]).value == 20


def test_xlsx_paid_single_service_leaves_out_due_and_service_columns(tmp_path):
    path = tmp_path / "r.xlsx"
    with i18n.use_locale("pt_BR"):
        write_xlsx(path, rows(3), _report("paid", service="cable"))
    sheet = openpyxl.load_workbook(path).active
    header = [c.value for c in sheet[5]]
    assert header[0] == "CRF" and len(header) == 13  # no service, amount due, months pending
    assert sheet["K6"].is_date and sheet["K6"].number_format == "dd/mm/yyyy"


def test_xlsx_text_that_looks_like_sheet_xml_stays_text(tmp_path):
    path = tmp_path / "r.xlsx"
    data = rows(2)
    data[0]["name"] = "<r><t>Zé</t></r>"
    data[1]["name"] = "Ana & <b>Bia</b>"
    with i18n.use_locale("en"):
        write_xlsx(path, data, _report("paid", service="cable"))
    sheet = openpyxl.load_workbook(path).active
    assert [sheet["B6"].value, sheet["B7"].value] == ["<r><t>Zé</t></r>", "Ana & <b>Bia</b>"]


def test_xlsx_empty_report_still_has_header_and_zero_totals(tmp_path):
    path = tmp_path / "r.xlsx"
    with i18n.use_locale("en"):
        totals = write_xlsx(path, [], _report("unpaid"))
    assert totals.count == 0
    sheet = openpyxl.load_workbook(path, data_only=True).active
    assert sheet["A5"].value == "CRF"
    assert sheet["A6"].value == "Total: 0 rows"
    assert sheet["J6"].value == 0


def _pdf_pages(path) -> list[str]:
    return [page.extract_text() for page in PdfReader(path).pages]


def write_pdf(path, data, report, **kw):
    heading = Heading.of(report, office="Test Office", generated_at=GENERATED, tz=TZ)
    writer = PdfReport(path, heading=heading, columns=columns_for(report), currency="BRL", **kw)
    for start in range(0, len(data), 9):
        writer.add(data[start : start + 9])
    return writer.close()


CRF = re.compile(r"\bTS\d{6}\b")


def test_pdf_chunks_keep_header_on_every_page_and_number_pages_across_chunks(tmp_path):
    path = tmp_path / "r.pdf"
    data = rows(150, unpaid=True)
    with i18n.use_locale("en"):
        totals = write_pdf(path, data, _report("unpaid", file_type="pdf"), chunk_pages=1)
    assert totals.count == 150
    pages = _pdf_pages(path)
    assert len(pages) >= 3  # one page per chunk
    assert PdfReader(path).pages[0].mediabox.width > PdfReader(path).pages[0].mediabox.height
    for number, text in enumerate(pages, start=1):
        assert f"Page {number} of {len(pages)}" in text
        assert "CRF" in text and "Amount due" in text, f"no table header on page {number}"
    assert "Test Office" in pages[0] and "October 2026" in pages[0]
    assert "Classification" not in pages[1]  # the report's heading is on the first page only
    # Every row once, in order, each whole on one page (its CRF and its last invoice).
    everything = "\n".join(pages)
    assert CRF.findall(everything) == [row["crf"] for row in data]
    for row in data:
        (page,) = [text for text in pages if row["crf"] in text]
        assert row["payments"][-1][1] in page
    last = pages[-1]
    assert "Totals" in last
    assert "R$" in last and "{:,.2f}".format(sum(r["charged"] for r in data) / 100) in last
    assert "{:,.2f}".format(sum(r["due"] for r in data) / 100) in last
    assert "Rows" in last and "150" in last
    # Both payments of a month paid twice are listed.
    assert "TS-2026-000503" in everything and "TS-2026-000003" in everything


def test_pdf_in_worker_processes_matches_inline(tmp_path):
    data = rows(120)
    with i18n.use_locale("pt_BR"):
        write_pdf(tmp_path / "a.pdf", data, _report(file_type="pdf"), chunk_pages=1)
        write_pdf(tmp_path / "b.pdf", data, _report(file_type="pdf"), chunk_pages=1, workers=1)
    inline, pooled = _pdf_pages(tmp_path / "a.pdf"), _pdf_pages(tmp_path / "b.pdf")
    assert len(inline) == len(pooled) >= 2
    strip = re.compile(r"Gerado em .*")
    assert [strip.sub("", t) for t in inline] == [strip.sub("", t) for t in pooled]
    assert f"Página 1 de {len(inline)}" in pooled[0] or f"Page 1 of {len(inline)}" in pooled[0]
    assert not list(tmp_path.glob(".pdf-*")), "chunk files were left behind"


def test_pdf_in_portuguese_formats_money_dates_and_labels(tmp_path):
    path = tmp_path / "r.pdf"
    data = rows(5)
    with i18n.use_locale("pt_BR"):
        write_pdf(path, data, _report(file_type="pdf"))
        (text,) = _pdf_pages(path)
        assert i18n.money(4990, "BRL") in text and i18n.money(4994, "BRL") in text
        assert i18n.date(dt.date(2026, 10, 3), "short") in text
        assert i18n.money(sum(r["charged"] for r in data), "BRL") in text
    assert "03/10/2026" in text or "03/10/26" in text


def test_pdf_keeps_long_values_whole_escaped_and_payments_level(tmp_path):
    path = tmp_path / "r.pdf"
    data = rows(3)
    data[0]["name"] = "Maria Aparecida dos Santos Oliveira <b>Cavalcanti</b> & Filhos"
    data[1]["email"] = "a.very.long.address.for.one.customer@subdomain.example.com"
    data[2]["payments"] = [(dt.date(2026, 10, d), f"XY-2026-{d:06d}", "cash") for d in (1, 2, 3)]
    with i18n.use_locale("en"):
        write_pdf(path, data, _report(file_type="pdf"))
    (text,) = _pdf_pages(path)
    for word in ("Maria", "Aparecida", "Oliveira", "<b>Cavalcanti</b>", "&", "Filhos"):
        assert word in text
    # A value wider than its column goes on in the lines below, within the column.
    grid = Grid(columns_for(_report(file_type="pdf")))
    pieces = wrap(data[1]["email"], grid.widths[5])
    assert len(pieces) > 1 and "".join(pieces) == data[1]["email"]
    for piece in pieces:
        assert piece in text
    # Each payment's date, invoice and mode are on one line of their own.
    lines = text.splitlines()
    for day in (1, 2, 3):
        (line,) = [line for line in lines if f"XY-2026-{day:06d}" in line]
        assert f"10/{day}/26" in line and "Cash" in line


def test_pdf_grid_fits_the_page_and_aligns_amounts_right():
    report = _report("unpaid", file_type="pdf")
    with i18n.use_locale("en"):
        columns = columns_for(report)
    grid = Grid(columns)
    cells = [["x" * 80] if c.kind == "text" else ["R$1.00"] for c in columns]
    lines = grid.lines(cells)
    assert len(lines) > 1 and all(len(line) <= CHARS for line in lines)
    assert sum(grid.widths) + sum(grid.gaps) <= CHARS
    charged = next(i for i, c in enumerate(columns) if c.key == "charged")
    start = sum(grid.widths[:charged]) + sum(grid.gaps[:charged])
    assert lines[0][start : start + grid.widths[charged]].endswith("R$1.00")
    assert wrap("tab\tand\nnewline", 40) == ["tab\tand\nnewline"]
    assert grid.lines([["a\tb\nc"]] + [[]] * (len(columns) - 1))[0].startswith("a b c")


def test_pdf_empty_report_says_so(tmp_path):
    path = tmp_path / "r.pdf"
    with i18n.use_locale("en"):
        write_pdf(path, [], _report("paid", service="broadband", file_type="pdf"))
    (text,) = _pdf_pages(path)
    assert "No charges match these filters." in text
    assert "Page 1 of 1" in text and "Rows" in text


def test_css_string_cannot_escape_the_style_element():
    quoted = css_string('Bar "Zé" </style><script>')
    assert "<" not in quoted and '"Z' not in quoted[1:-1]
    assert quoted.startswith('"') and quoted.endswith('"')


def test_xlsx_text_keeps_spaces_control_characters_and_excel_escape_lookalikes(tmp_path):
    # Read back by LibreOffice, which decodes Excel's _xHHHH_ escapes as Excel does (openpyxl
    # leaves them as written).
    path = tmp_path / "r.xlsx"
    data = rows(3)
    data[0]["name"] = "  Zé & <Bia>  "
    data[1]["name"] = "bell\x07here"
    data[2]["name"] = "literal _x0041_ stays"
    with i18n.use_locale("en"):
        write_xlsx(path, data, _report("paid", service="cable"))
    names = [row[1] for row in calc_csv(path, tmp_path)[5:8]]
    assert names == ["  Zé & <Bia>  ", "bell\x07here", "literal _x0041_ stays"]


def test_xlsx_prints_landscape_a4_one_page_wide_with_the_header_on_every_page(tmp_path):
    path = tmp_path / "r.xlsx"
    with i18n.use_locale("pt_BR"):
        write_xlsx(path, rows(4), _report("paid"))
    book = openpyxl.load_workbook(path)
    sheet = book.active
    assert sheet.title == "Relatório"
    assert sheet.print_title_rows == "$5:$5"
    assert (sheet.page_setup.orientation, sheet.page_setup.paperSize) == ("landscape", 9)
    assert sheet.sheet_properties.pageSetUpPr.fitToPage
    # One page wide (fitToWidth left out means 1), as many pages tall as it takes.
    assert sheet.page_setup.fitToWidth in (None, 1) and sheet.page_setup.fitToHeight == 0
    assert book.properties.title == sheet["A2"].value
    assert sheet["A5"].font.b and sheet["A5"].fill.fgColor.rgb == "FFDDE4EE"
    assert sheet["A5"].alignment.wrap_text and sheet["A5"].border.bottom.style == "thin"
    assert sheet["A10"].font.b and sheet["A10"].border.top.style == "thin"
