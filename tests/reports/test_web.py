"""The report pages and API: the form, its messages, the file at once for a small report, the
progress page and download for a large one, and who may do any of it."""

from __future__ import annotations

import io

import openpyxl
from pypdf import PdfReader

from appliance.reports import service as reports
from tests.conftest import run
from tests.helpers import STAFF_PASSWORD, field_error, html, login, make_staff, post_form

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORM = {"service": "both", "year": "2026", "month": "10", "classification": "unpaid"}


def admin(client):
    staff = run(make_staff("admin"))
    login(client, staff["username"])
    return staff


def test_the_form_offers_last_month_and_keeps_input_on_errors(client, settings, office):
    admin(client)
    page = html(client.get("/reports"))
    assert page.find("a", href="/reports") is not None  # in the navigation
    month = page.find("select", attrs={"name": "month"}).find("option", selected=True)
    year = page.find("select", attrs={"name": "year"}).find("option", selected=True)
    assert (month["value"], year["value"]) == ("10", "2026")  # today is 16 November 2026

    r = post_form(client, "/reports", {**FORM, "month": "12", "file_type": "pdf", "service": "tv"})
    assert r.status_code == 422
    page = html(r)
    assert "has not begun" in field_error(page, "month")
    assert field_error(page, "service")
    assert page.find("input", attrs={"name": "file_type", "value": "pdf"}).has_attr("checked")
    assert (
        page.find("select", attrs={"name": "month"}).find("option", selected=True)["value"] == "12"
    )


def test_a_small_report_downloads_at_once(client, settings, office):
    admin(client)
    r = post_form(client, "/reports", {**FORM, "file_type": "xlsx"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(XLSX)
    assert 'filename="TS-unpaid-both-2026-10.xlsx"' in r.headers["content-disposition"]
    sheet = openpyxl.load_workbook(io.BytesIO(r.content)).active
    assert [row[0] for row in sheet.iter_rows(min_row=6, max_row=8, values_only=True)] == [
        office.crf["ana"],
        office.crf["carla"],
        office.crf["hugo"],
    ]
    # It is also listed among the recent reports, with its link.
    listed = html(client.get("/reports")).select("table.reports tbody tr")
    assert len(listed) == 1 and listed[0].find("a", href=lambda h: h.endswith("/file"))


def test_a_large_report_shows_progress_then_the_download(client, settings, office, monkeypatch):
    monkeypatch.setitem(reports.INLINE_ROWS, "pdf", 1)
    admin(client)
    r = post_form(client, "/reports", {**FORM, "file_type": "pdf"}, follow_redirects=False)
    assert r.status_code == 303
    job_page = r.headers["location"]
    page = html(client.get(job_page))
    box = page.find(id="report-job")
    assert box["data-status"] == "done" and not box.has_attr("hx-get")
    assert page.find("progress")["value"] == "100"
    link = page.find(id="report-download")["href"]
    fragment = client.get(job_page + "/progress", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert html(fragment).find(id="report-download")["href"] == link
    pdf = client.get(link)
    assert pdf.headers["content-type"].startswith("application/pdf")
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert office.crf["carla"] in text and "Totals" in text


def test_a_running_report_polls_for_its_progress(client, settings, office):
    from appliance.reports.tables import ReportJob

    admin(client)
    job = ReportJob(
        service="cable", year=2026, month=10, classification="paid", file_type="pdf",
        status="running", rows_total=200, rows_done=50, locale="en",
    )  # fmt: skip
    run(job.save())
    box = html(client.get(f"/reports/{job.id}/progress")).find(id="report-job")
    assert box["hx-get"] == f"/reports/{job.id}/progress" and "every" in box["hx-trigger"]
    assert box.find("progress")["value"] == "25"
    assert "50 of 200" in box.get_text()
    assert client.get(f"/reports/{job.id}/file").status_code == 404


def test_only_admins_reach_reports(client, settings, office):
    agent = run(make_staff("agent"))
    login(client, agent["username"])
    assert client.get("/reports").status_code == 403
    r = client.post(
        "/api/v1/auth/token", json={"username": agent["username"], "password": STAFF_PASSWORD}
    )
    token = r.json()["access_token"]
    r = client.post(
        "/api/v1/reports",
        json={**FORM, "year": 2026, "month": 10, "file_type": "xlsx"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 403


def test_the_api_creates_a_report_and_serves_its_file(client, settings, office):
    staff = run(make_staff("admin"))
    token = client.post(
        "/api/v1/auth/token", json={"username": staff["username"], "password": STAFF_PASSWORD}
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    body = {"service": "broadband", "year": 2026, "month": 10, "classification": "paid"}
    r = client.post("/api/v1/reports", json={**body, "file_type": "xlsx"}, headers=auth)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "done" and job["rows_total"] == 1
    assert job["file_url"] == f"/api/v1/reports/{job['id']}/file"
    again = client.get(f"/api/v1/reports/{job['id']}", headers=auth).json()
    assert again["percent"] == 100 and again["size"] > 0
    file = client.get(job["file_url"], headers=auth)
    assert file.headers["content-type"].startswith(XLSX)
    sheet = openpyxl.load_workbook(io.BytesIO(file.content)).active
    assert sheet["A6"].value == office.crf["gil"]

    r = client.post("/api/v1/reports", json={**body, "month": 12, "file_type": "pdf"}, headers=auth)
    assert r.status_code == 422
    assert "has not begun" in r.json()["errors"]["month"]
    r = client.post(
        "/api/v1/reports", json={**body, "service": "tv", "file_type": "xlsx"}, headers=auth
    )
    assert r.status_code == 422 and "service" in r.json()["errors"]
    missing = client.get("/api/v1/reports/0190a5c6-0000-7000-8000-000000000000", headers=auth)
    assert missing.status_code == 404
