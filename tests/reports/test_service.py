"""Reports made from the ledger: who is in which report, the amounts, payments and dues, both
formats; validation; the background path and its progress; cleanup."""

from __future__ import annotations

import datetime as dt

import openpyxl
import pytest
from pypdf import PdfReader

from appliance import clock, i18n
from appliance.errors import NotFound, ValidationFailed
from appliance.reports import rows as report_rows
from appliance.reports import service as reports
from appliance.reports.tables import ReportJob
from tests.conftest import run
from tests.helpers import SYSTEM


def make(settings, **filters):
    data = {"service": "both", "year": 2026, "month": 10, "classification": "paid"}
    data.update({"file_type": "xlsx", **filters})
    with i18n.use_locale("en"):
        return run(reports.create_report(data, actor=SYSTEM, settings=settings))


def xlsx_rows(settings, job) -> tuple[list[dict], dict]:
    """Data rows as {header: value} and the totals row, from the file on disk."""
    sheet = openpyxl.load_workbook(reports.file_path(settings, job), data_only=True).active
    values = list(sheet.iter_rows(min_row=5, values_only=True))
    header, body, totals = values[0], values[1:-1], values[-1]
    return [dict(zip(header, r, strict=True)) for r in body], dict(zip(header, totals, strict=True))


EXPECTED = {
    ("paid", "cable"): ["ana", "bruno", "elisa"],
    ("paid", "broadband"): ["gil"],
    ("paid", "both"): ["ana", "bruno", "elisa", "gil"],
    ("unpaid", "cable"): ["hugo"],
    ("unpaid", "broadband"): ["ana", "carla"],
    ("unpaid", "both"): ["ana", "carla", "hugo"],
}


@pytest.mark.parametrize(("classification", "service"), sorted(EXPECTED))
def test_each_classification_and_service_lists_the_right_months(
    settings, office, classification, service
):
    job = make(settings, classification=classification, service=service)
    assert job["status"] == "done" and job["percent"] == 100
    data, totals = xlsx_rows(settings, job)
    assert [r["CRF"] for r in data] == [office.crf[k] for k in EXPECTED[classification, service]]
    assert job["rows_total"] == len(data)
    assert totals["CRF"] == f"Total: {len(data)} row" + ("s" if len(data) != 1 else "")
    assert totals["Charged"] == pytest.approx(sum(r["Charged"] for r in data))
    assert totals["Paid"] == pytest.approx(sum(r["Paid"] for r in data))
    if classification == "paid":
        assert all(r["Paid"] >= r["Charged"] for r in data)
        assert "Amount due" not in data[0]
    else:
        assert all(r["Paid"] < r["Charged"] for r in data)
        assert totals["Amount due"] == pytest.approx(sum(r["Amount due"] for r in data))
    assert ("Service" in data[0]) == (service == "both")


def test_rows_read_in_small_batches_are_the_same_rows_in_the_same_order(
    settings, office, monkeypatch
):
    whole = xlsx_rows(settings, make(settings, classification="unpaid"))
    monkeypatch.setattr(report_rows, "BATCH", 1)
    batched = xlsx_rows(settings, make(settings, classification="unpaid"))
    assert [r["CRF"] for r in batched[0]] == [office.crf[k] for k in ("ana", "carla", "hugo")]
    assert batched == whole


def test_partial_payments_show_paid_part_due_with_earlier_months_and_invoices(settings, office):
    job = make(settings, classification="unpaid", service="broadband")
    data, totals = xlsx_rows(settings, job)
    ana, carla = data
    assert ana["Customer"] == "Ana Souza" and ana["E-mail"] == "ana@example.com"
    assert (ana["Charged"], ana["Paid"]) == (89.90, 40.00)
    # September's whole month and what is left of October.
    assert ana["Amount due"] == pytest.approx(139.80) and ana["Months pending"] == 2
    assert ana["Paid on"] == dt.datetime(2026, 10, 10)
    assert ana["Invoice(s)"] == office.numbers["ana_bb"] and ana["Mode"] == "Online"
    assert ana["Plan"] == "Fibra 100"
    assert ana["Status"] in ("Active", "Inactive", "Suspended")
    # Carla's payment was reversed: nothing paid, and its invoice is not shown.
    assert carla["Paid"] == 0 and carla["Invoice(s)"] is None and carla["Paid on"] is None
    assert totals["Amount due"] == pytest.approx(139.80 + 89.90)
    assert totals["Months pending"] == 3


def test_paid_report_lists_every_instalment_and_months_paid_before_the_box(settings, office):
    data, totals = xlsx_rows(settings, make(settings, service="cable"))
    by_crf = {r["CRF"]: r for r in data}
    bruno = by_crf[office.crf["bruno"]]
    assert bruno["Paid on"] == dt.datetime(2026, 10, 20)
    assert office.numbers["bruno_1"] in bruno["Invoice(s)"]
    assert office.numbers["bruno_2"] in bruno["Invoice(s)"]
    assert bruno["Mode"] == "Cash, Online"
    elisa = by_crf[office.crf["elisa"]]
    assert elisa["Invoice(s)"] == "Paid before billing began" and elisa["Paid on"] is None
    assert totals["Charged"] == pytest.approx(3 * 49.90)


def test_pdf_reports_carry_the_same_rows_and_totals(settings, office):
    job = make(settings, classification="unpaid", service="both", file_type="pdf")
    assert job["status"] == "done"
    pages = [p.extract_text() for p in PdfReader(reports.file_path(settings, job)).pages]
    text = "\n".join(pages)
    for key in EXPECTED["unpaid", "both"]:
        assert office.crf[key] in text
    assert office.crf["gil"] not in text and office.crf["davi"] not in text
    assert "Test Office" in pages[0] and "Unpaid charges report" in pages[0]
    assert f"Page 1 of {len(pages)}" in pages[0]
    assert "Totals" in pages[-1]
    # Charged 89.90 + 89.90 + 49.90; due 139.80 + 89.90 + 39.90.
    assert "R$229.70" in pages[-1] and "R$269.60" in pages[-1]
    paid = make(settings, classification="paid", service="cable", file_type="pdf")
    text = "\n".join(p.extract_text() for p in PdfReader(reports.file_path(settings, paid)).pages)
    assert office.numbers["bruno_1"] in text and office.numbers["bruno_2"] in text
    assert "10/20/26" in text  # the second instalment's date


def test_a_month_without_charges_gives_an_empty_report(settings, office):
    job = make(settings, month=1, classification="unpaid", file_type="pdf")
    assert job["status"] == "done" and job["rows_total"] == 0
    (text,) = [p.extract_text() for p in PdfReader(reports.file_path(settings, job)).pages]
    assert "No charges match these filters." in text
    data, totals = xlsx_rows(settings, make(settings, month=1))
    assert data == [] and totals["CRF"] == "Total: 0 rows"


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"year": 1999}, "year", "Enter a year from 2000 to"),
        ({"year": "twenty"}, "year", "Enter a year from 2000 to"),
        ({"year": 2099}, "month", "This month has not begun yet"),
        ({"service": "radio"}, "service", "Choose cable TV, broadband or both."),
        ({"classification": "some"}, "classification", "Choose paid or unpaid."),
        ({"file_type": "doc"}, "file_type", "Choose PDF or Excel."),
        ({"month": 13}, "month", "Choose a month from 1 to 12."),
    ],
)
def test_invalid_requests_are_refused_with_a_clear_message(settings, change, field, message):
    with pytest.raises(ValidationFailed) as caught:
        make(settings, **change)
    assert caught.value.errors[field].startswith(message)
    assert run(ReportJob.count()) == 0


def test_a_month_that_has_not_begun_is_refused(settings):
    today = clock.today(settings.tz)
    future = (today.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    with pytest.raises(ValidationFailed) as caught:
        make(settings, year=future.year, month=future.month)
    assert "has not begun" in caught.value.errors["month"]
    # The current month is allowed: it is billed and partly paid.
    assert make(settings, year=today.year, month=today.month)["status"] == "done"


def test_large_reports_go_to_the_worker_and_progress_reaches_done(settings, office, monkeypatch):
    monkeypatch.setitem(reports.INLINE_ROWS, "pdf", 1)
    job = make(settings, classification="unpaid", file_type="pdf")
    # The queue runs tasks inline in tests: the worker's path ran to the end.
    assert job["status"] == "done" and job["percent"] == 100
    assert job["rows_done"] == job["rows_total"] == 3
    assert reports.file_path(settings, job).stat().st_size == job["size"] > 1000
    assert job["expires_at"] - job["finished_at"] == reports.KEEP_FOR


def test_reports_are_deleted_after_two_days_with_their_files(settings, office):
    job = make(settings)
    path = reports.file_path(settings, job)
    assert path.is_file()
    assert run(reports.cleanup(settings))["deleted"] == 0
    clock.shift(reports.KEEP_FOR + dt.timedelta(minutes=1))
    assert run(reports.cleanup(settings))["deleted"] == 1
    assert not path.exists()
    with pytest.raises(NotFound):
        run(reports.get_report(job["id"]))


def test_a_job_lost_with_a_stopped_worker_is_marked_interrupted(settings):
    lost = ReportJob(
        service="cable",
        year=2026,
        month=10,
        classification="paid",
        file_type="pdf",
        status="running",
        locale="en",
    )
    run(lost.save())
    clock.shift(reports.STALE_AFTER + dt.timedelta(minutes=1))
    with i18n.use_locale("en"):
        assert run(reports.cleanup(settings))["interrupted"] == 1
    job = run(reports.get_report(lost.id))
    assert job["status"] == "failed" and "interrupted" in job["error"]


def test_file_paths_come_from_the_job_id_only(settings):
    with pytest.raises(ValueError):
        reports.file_path(settings, {"id": "../../etc/passwd", "file_type": "pdf"})
    with pytest.raises(ValueError):
        reports.file_path(
            settings, {"id": "0190a5c6-0000-7000-8000-000000000000", "file_type": "../x"}
        )
