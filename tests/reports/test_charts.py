"""The dashboard's charts: the figures agree with the payment reports, follow new payments, and
are drawn as SVG with the numbers also in a table."""

from __future__ import annotations

import datetime as dt

import openpyxl
import pytest

from appliance import i18n
from appliance.reports import charts
from appliance.reports import service as reports
from tests.conftest import run
from tests.helpers import SYSTEM, html, login, make_staff
from tests.reports.conftest import TODAY
from tests.reports.ledger import pay


def october(settings, service: str) -> charts.MonthFigures:
    figures = run(charts.collections(settings, TODAY))[service]
    assert [(f.year, f.month) for f in figures][-2:] == [(2026, 10), (2026, 11)]
    return figures[-2]


def report_totals(settings, classification: str, service: str) -> dict:
    data = {"service": service, "year": 2026, "month": 10, "classification": classification}
    with i18n.use_locale("en"):
        job = run(
            reports.create_report({**data, "file_type": "xlsx"}, actor=SYSTEM, settings=settings)
        )
    sheet = openpyxl.load_workbook(reports.file_path(settings, job), data_only=True).active
    rows = list(sheet.iter_rows(min_row=5, values_only=True))
    return dict(zip(rows[0], rows[-1], strict=True))


def test_last_months_cross_the_year():
    assert charts.last_months(dt.date(2026, 2, 10), 4) == [
        (2025, 11),
        (2025, 12),
        (2026, 1),
        (2026, 2),
    ]
    assert len(charts.last_months(dt.date(2026, 2, 10))) == 12


@pytest.mark.parametrize("service", ["cable", "broadband"])
def test_collections_agree_with_the_paid_and_unpaid_reports(settings, office, service):
    month = october(settings, service)
    paid, unpaid = (
        report_totals(settings, "paid", service),
        report_totals(settings, "unpaid", service),
    )
    assert month.received == round(100 * (paid["Paid"] + unpaid["Paid"]))
    assert month.pending == round(100 * (unpaid["Charged"] - unpaid["Paid"]))
    expected = {"cable": (4990 * 3 + 1000, 3990), "broadband": (4000 + 8990, 4990 + 8990)}
    assert (month.received, month.pending) == expected[service]


def test_a_new_payment_shows_at_once_despite_the_cache(settings, office):
    before = october(settings, "cable")
    assert october(settings, "cable") == before  # served from memory
    hugo = office.customers["hugo"]
    oct_h = run(charge_id(hugo))
    run(pay(hugo, [(oct_h, 3990)], paid_on=dt.date(2026, 11, 2)))
    after = october(settings, "cable")
    assert (after.received, after.pending) == (before.received + 3990, before.pending - 3990)


async def charge_id(customer):
    from appliance.billing.tables import Charge

    rows = await Charge.select(Charge.id).where(
        (Charge.customer == customer["id"]) & (Charge.year == 2026) & (Charge.month == 10)
    )
    return rows[0]["id"]


def test_the_admin_dashboard_draws_both_charts_with_their_numbers(client, settings, office):
    staff = run(make_staff("admin"))
    login(client, staff["username"])
    page = html(client.get("/"))
    section = page.find("section", class_="charts")
    assert section is not None
    cable = section.find(attrs={"data-chart": "collections-cable"})
    svg = cable.find("svg")
    assert svg["role"] == "img" and svg.find("title").get_text()
    assert len(svg.find_all("rect")) >= 3
    rows = {
        tr.find("th").get_text(strip=True): [td.get_text(strip=True) for td in tr.find_all("td")]
        for tr in cable.find("tbody").find_all("tr")
    }
    assert rows["October 2026"] == ["R$159.70", "R$39.90"]
    statuses = section.find(attrs={"data-chart": "statuses"})
    assert statuses.find("svg") is not None
    cells = {
        tr.find("th").get_text(strip=True): [td.get_text(strip=True) for td in tr.find_all("td")]
        for tr in statuses.find("tbody").find_all("tr")
    }
    assert sum(int(n) for n in cells["Cable TV"]) == 5  # Ana, Bruno, Davi, Elisa, Hugo


def test_charts_escape_their_labels_and_scale_to_round_ticks():
    figures = [charts.MonthFigures(2026, m, 100_00 * m, 10_00) for m in range(1, 13)]
    with i18n.use_locale("en"):
        svg = str(charts.collections_chart(figures, title="<b>x</b> & y", currency="BRL"))
    assert "<b>" not in svg and "&lt;b&gt;x&lt;/b&gt; &amp; y" in svg
    assert charts.axis_ticks(1210_00) == [0, 500_00, 1000_00, 1500_00]
    assert charts.axis_ticks(0) == [0, 100]
    with i18n.use_locale("en"):
        empty = str(charts.status_chart({"cable": {}, "broadband": {}}, title="t"))
    assert empty.startswith("<svg") and "Cable TV" in empty
