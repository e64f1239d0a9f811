"""The invoice document: one template for the printable page and the PDF, three layouts."""

from __future__ import annotations

import io

import pytest
from bs4 import BeautifulSoup
from pypdf import PdfReader

from appliance.invoices import render
from tests.conftest import make_settings
from tests.invoices.builders import make_view

MM = 72 / 25.4  # PDF points per millimetre


def pdf_text(data: bytes) -> tuple[PdfReader, str]:
    reader = PdfReader(io.BytesIO(data))
    text = " ".join(page.extract_text() for page in reader.pages)
    return reader, " ".join(text.split())  # folds the no-break spaces of money formats


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    return make_settings(tmp_path_factory.mktemp("render"))


@pytest.fixture(scope="module")
def a4_pdf(office):
    return render.render_pdf(make_view(), office, layout="a4", locale="en")


def test_a4_pdf_carries_number_amounts_months_and_payment(a4_pdf):
    assert a4_pdf.startswith(b"%PDF-") and b"%%EOF" in a4_pdf[-32:]
    reader, text = pdf_text(a4_pdf)
    assert len(reader.pages) == 1
    width, height = float(reader.pages[0].mediabox.width), float(reader.pages[0].mediabox.height)
    assert (round(width / MM), round(height / MM)) == (210, 297)
    for expected in (
        "TS-2026-000042",
        "Test Office",
        "João da Silva",
        "TS000042",
        "January 2026",
        "March 2026",
        "December 2025",
        "Cable TV",
        "Broadband",
        "Fibra 100",
        "Amount paid R$200.10",
        "Credit balance R$10.40",
        "Remaining due R$49.90",
        "Online",
        "E1234567890",
        "Maria Agent",
    ):
        assert expected in text, expected
    assert "REVERSED" not in text
    # The shipped font (the @font-face family) is embedded, not whatever the machine has.
    fonts = reader.pages[0]["/Resources"]["/Font"]
    names = sorted(str(fonts[key].get_object()["/BaseFont"]).split("+")[-1] for key in fonts)
    assert names == ["CTVMS-Sans", "CTVMS-Sans-Bold"]


def _placed_text(data: bytes) -> dict[str, tuple[float, float]]:
    """Where each piece of text of the first page starts (WeasyPrint's text matrix)."""
    placed: dict[str, tuple[float, float]] = {}

    def visit(text, cm, tm, font_dict, font_size):
        if text.strip():
            placed.setdefault(text.strip(), (tm[4], tm[5]))

    PdfReader(io.BytesIO(data)).pages[0].extract_text(visitor_text=visit)
    return placed


def _embedded_fonts(data: bytes) -> list[str]:
    fonts = PdfReader(io.BytesIO(data)).pages[0]["/Resources"]["/Font"]
    return sorted(str(fonts[key].get_object()["/BaseFont"]).split("+")[-1] for key in fonts)


def test_a4_head_puts_office_left_and_title_right_even_with_a_long_name(office, a4_pdf):
    long_name = "Cooperativa de Televisão a Cabo e Internet do Vale do Paraíba Limitada"
    view = make_view(office={"code": "TS", "name": long_name, "address": "Rua das Flores, 12"})
    # Rendered after a4_pdf: the stylesheets and fonts parsed once serve the later renders.
    for data in (a4_pdf, render.render_pdf(view, office, layout="a4", locale="en")):
        assert _embedded_fonts(data) == ["CTVMS-Sans", "CTVMS-Sans-Bold"]
        placed = _placed_text(data)
        # The office name is the page's first text; the title stays on its first line, at the
        # right, however long the name (it wraps beside the title instead).
        office_x, office_y = next(iter(placed.values()))
        title_x, title_y = placed["INVOICE"]
        assert abs(title_y - office_y) < 10 and title_x > office_x + 300


def test_pdf_follows_the_language_asked(office):
    data = render.render_pdf(make_view(mode="cash", reference=""), office, locale="pt_BR")
    _, text = pdf_text(data)
    assert "R$ 200,10" in text
    assert "março de 2026" in text and "dezembro de 2025" in text


@pytest.mark.parametrize("layout", ["80mm", "58mm"])
def test_receipt_is_one_page_of_roll_paper_cut_to_its_content(office, layout):
    data = render.render_pdf(make_view(), office, layout=layout, locale="en")
    reader, text = pdf_text(data)
    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    assert round(float(box.width) / MM) == int(layout[:2])
    assert 60 < float(box.height) / MM < 200  # no metre of blank paper, nothing cut off
    assert "TS-2026-000042" in text and "R$200.10" in text and "Maria Agent" in text


def test_long_receipt_grows_instead_of_breaking_into_pages(office):
    months = [
        {
            "service": "cable",
            "plan_name": "Básico",
            "year": 2020 + i // 12,
            "month": i % 12 + 1,
            "amount": 4990,
        }
        for i in range(72)
    ]
    data = render.render_pdf(make_view(lines=months), office, layout="58mm", locale="en")
    reader, text = pdf_text(data)
    assert len(reader.pages) == 1
    assert float(reader.pages[0].mediabox.height) / MM > 297
    assert "Jan 2020" in text and "Dec 2025" in text


def test_reversed_invoice_carries_the_banner_and_reason(office):
    view = make_view(reversed=True, reversal_reason="Paid twice by mistake")
    page = BeautifulSoup(render.render_html(view, office, locale="en"), "html.parser")
    banner = page.find(class_="reversed")
    assert banner is not None
    assert "REVERSED" in banner.get_text() and "Paid twice by mistake" in banner.get_text()
    plain = BeautifulSoup(render.render_html(make_view(), office, locale="en"), "html.parser")
    assert plain.find(class_="reversed") is None


def test_printable_page_escapes_data_and_needs_no_inline_script_or_style(office):
    view = make_view(
        customer={**make_view()["customer"], "name": '<script>alert("x")</script>'},
        reference='"><img src=x onerror=alert(1)>',
    )
    html = render.render_html(view, office, locale="en")
    page = BeautifulSoup(html, "html.parser")
    assert "<script>alert" not in html and "<img src=x" not in html
    assert '<script>alert("x")</script>' in page.get_text()
    # The CSP allows only scripts and styles from /static.
    assert [s["src"] for s in page.find_all("script")] == ["/static/invoices/print.js"]
    assert page.find("style") is None and page.find(attrs={"style": True}) is None
    assert page.find(attrs={"onclick": True}) is None
    assert page.find("button", attrs={"data-print": True}) is not None


def test_pdf_html_has_no_toolbar(office):
    html = render.render_html(make_view(), office, locale="en", screen=False)
    page = BeautifulSoup(html, "html.parser")
    assert page.find(class_="toolbar") is None and page.find("script") is None


@pytest.mark.parametrize("layout", ["80mm", "58mm"])
def test_receipt_page_lists_months_per_service(office, layout):
    page = BeautifulSoup(render.render_html(make_view(), office, layout=layout), "html.parser")
    assert page.body["class"] == [f"layout-{layout}"]
    services = [th.get_text(" ", strip=True) for th in page.select("tr.service th")]
    assert services == ["Cable TV · Básico", "Broadband · Fibra 100"]
    current = page.find("a", attrs={"aria-current": "page"})
    assert current["href"] == f"/invoices/TS-2026-000042?layout={layout}"


def test_unknown_layout_falls_back_to_a4(office):
    page = BeautifulSoup(render.render_html(make_view(), office, layout="../x"), "html.parser")
    assert page.body["class"] == ["layout-a4"]


def test_months_settled_names_each_month_with_its_year():
    from appliance.i18n import use_locale

    with use_locale("en"):
        assert render.months_settled(make_view()) == [
            "December 2025",
            "January 2026",
            "March 2026",
        ]


def test_a_customers_own_online_payment_names_no_staff(office):
    view = make_view(mode="online", received_by="online")
    page = BeautifulSoup(render.render_html(view, office, locale="en"), "html.parser")
    receiver = page.find("dt", string="Received by").find_next_sibling("dd")
    assert receiver.get_text() == "The customer, online"
