"""Issue 5 in a real browser: the admin asks for a report too large to build while they wait,
watches the progress bar HTMX keeps fresh, downloads the file when it is ready, and the file
holds what the ledger holds; the dashboard's charts fit a tablet with their numbers in a table.

The offices are real demo offices billed by the real year updater, served by `ctvms serve` with
`ctvms worker` beside it (the background build runs in the worker process).
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from appliance.reports import service as reports
from bench.server import ServerProcess
from tests.browser.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, LiveServer

TZ = ZoneInfo("America/Sao_Paulo")  # the live server's default CTVMS_TIMEZONE
JOB_URL = re.compile(r"/reports/[0-9a-f-]{36}$")


def billed_office(server: LiveServer, customers: int) -> LiveServer:
    """Fill ``server``'s office with ``customers`` demo customers billed up to this month, then
    start its worker."""
    # Today's backup is taken while the office is still empty: otherwise the worker's start-up
    # catch-up spends its first ~10 s archiving the demo office before it reaches the report.
    server.ctvms("jobs", "run", "backup")
    server.ctvms("demo", "--customers", str(customers), "--years", "1")
    # Billed before the worker starts, so every row is there when the report is asked for.
    server.ctvms("jobs", "run", "year-updater")
    server.process.start_worker()
    return server


@pytest.fixture(scope="module")
def small_office(office_template, tmp_path_factory) -> Iterator[LiveServer]:
    """400 demo customers: a paid cable TV PDF of this month is too long to make inline."""
    process = ServerProcess(
        tmp_path_factory.mktemp("office"),
        env={"CTVMS_OFFICE_CODE": "TS", "CTVMS_OFFICE_NAME": "Browser Test Office"},
    )
    shutil.copy(office_template, process.data_dir)
    process.start()
    try:
        yield billed_office(LiveServer(process, ADMIN_USERNAME, ADMIN_PASSWORD), 400)
    finally:
        process.stop()


def log_in(page, server) -> None:
    page.goto(server.url("/login"))
    page.get_by_label("Username, customer number or e-mail").fill(server.admin_username)
    page.get_by_label("Password").fill(server.admin_password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/$"))


def ledger(server, month: dt.date, *, paid: bool, services: tuple[str, ...]) -> dict[str, int]:
    """Count and sums of the month's billed charges, read straight from the office's database."""
    settled = "paid >= amount" if paid else "paid < amount"
    marks = ", ".join("?" for _ in services)
    # Only fixed text is pasted into the query; the values are bound.
    query = f"""SELECT COUNT(*), COALESCE(SUM(amount), 0), COALESCE(SUM(paid), 0)
        FROM billing_charges WHERE year = ? AND month = ? AND state = 'billed'
        AND {settled} AND service IN ({marks})"""  # noqa: S608
    with sqlite3.connect(f"file:{server.data_dir / 'ctvms.sqlite3'}?mode=ro", uri=True) as conn:
        n, charged, got = conn.execute(query, (month.year, month.month, *services)).fetchone()
    return {"rows": n, "charged": charged, "paid": got}


def ask_for_report(page, month: dt.date, *, service: str, classification: str, file_type: str):
    """Fill the form and submit it; return the HTMX progress fragments fetched meanwhile."""
    fragments: list[str] = []

    def keep(response) -> None:
        if response.url.endswith("/progress") and response.request.headers.get("hx-request"):
            fragments.append(response.text())

    page.on("response", keep)
    page.goto("/reports")
    page.get_by_label("Service").select_option(service)
    page.get_by_label("Month").select_option(str(month.month))
    page.get_by_label("Year").select_option(str(month.year))
    page.get_by_role("radio", name=classification, exact=True).check()
    page.get_by_role("radio", name=file_type, exact=True).check()
    page.get_by_role("button", name="Make report").click()
    page.wait_for_url(JOB_URL)
    return fragments


def wait_for_download(page, fragments: list[str], tmp_path: Path) -> tuple[Path, str]:
    """Check the job page shows a running job's progress bar, wait for the link, download."""
    box = page.locator("#report-job")
    # Too large to build inline: the page opens on a job that is not finished yet, with a bar
    # that HTMX polls for (read at once: HTMX replaces the block every second).
    first = box.evaluate(
        "el => ({status: el.dataset.status, poll: el.getAttribute('hx-get'),"
        " bar: el.querySelector('progress') !== null})"
    )
    assert first["status"] in ("queued", "running"), first
    assert first["poll"].endswith("/progress") and first["bar"], first
    link = page.locator("#report-download")
    link.wait_for(timeout=90_000)
    assert box.get_attribute("data-status") == "done"
    assert page.locator("#report-progress").get_attribute("value") == "100"
    # The link arrived in a fragment HTMX fetched, not by reloading the page.
    assert fragments and "report-download" in fragments[-1]
    assert all("<html" not in f for f in fragments)
    with page.expect_download() as caught:
        link.click()
    download = caught.value
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    return path, download.suggested_filename


def test_a_large_excel_report_is_built_in_the_background_and_downloaded(
    live_server_factory, new_context, tmp_path
):
    # Paid months of both services this month: more rows than an inline Excel report allows.
    server = billed_office(live_server_factory(worker=False), 6000)
    month = dt.datetime.now(TZ).date().replace(day=1)
    expected = ledger(server, month, paid=True, services=("cable", "broadband"))
    assert expected["rows"] > reports.INLINE_ROWS["xlsx"], "the demo office is too small"

    page = new_context(base_url=server.base_url, accept_downloads=True).new_page()
    log_in(page, server)
    fragments = ask_for_report(
        page, month, service="both", classification="Paid", file_type="Excel"
    )
    path, name = wait_for_download(page, fragments, tmp_path)
    assert name == f"TS-paid-both-{month:%Y-%m}.xlsx"

    book = openpyxl.load_workbook(path, data_only=True)
    sheet = book.active
    assert "Browser Test Office" in str(sheet["A1"].value)
    assert sheet.freeze_panes == "A6" and sheet.auto_filter.ref
    values = list(sheet.iter_rows(min_row=5, values_only=True))
    header, body, totals = values[0], values[1:-1], values[-1]
    data = [dict(zip(header, row, strict=True)) for row in body]
    total = dict(zip(header, totals, strict=True))
    assert len(data) == expected["rows"]
    assert total["CRF"] == f"Total: {expected['rows']:,} rows"
    assert round(sum(r["Charged"] for r in data) * 100) == expected["charged"]
    assert round(total["Charged"] * 100) == expected["charged"]
    assert round(total["Paid"] * 100) == expected["paid"]
    assert all(r["Paid"] >= r["Charged"] for r in data)
    assert {r["Service"] for r in data} == {"Cable TV", "Broadband"}
    keys = [(r["CRF"], r["Service"]) for r in data]
    assert len(set(keys)) == len(keys) and [k[0] for k in keys] == sorted(k[0] for k in keys)
    # Real numbers, not text, so the sheet can sum and filter them.
    assert all(isinstance(r["Charged"], float | int) for r in data)

    # The recent reports list it with its download link.
    page.goto("/reports")
    row = page.locator("table.reports tbody tr").first
    assert f"{expected['rows']:,}" in row.inner_text()
    assert row.get_by_role("link", name="Download").is_visible()


def test_a_large_pdf_report_is_built_in_the_background_and_reads_back(
    small_office, new_context, tmp_path
):
    server = small_office
    month = dt.datetime.now(TZ).date().replace(day=1)
    expected = ledger(server, month, paid=True, services=("cable",))
    assert expected["rows"] > reports.INLINE_ROWS["pdf"], "the demo office is too small"

    page = new_context(base_url=server.base_url, accept_downloads=True).new_page()
    log_in(page, server)
    fragments = ask_for_report(page, month, service="cable", classification="Paid", file_type="PDF")
    path, name = wait_for_download(page, fragments, tmp_path)
    assert name == f"TS-paid-cable-{month:%Y-%m}.pdf"

    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    pages = text.split("\f")
    pages = [p for p in pages if p.strip()]
    assert "Browser Test Office" in pages[0]
    for number, page_text in enumerate(pages, start=1):
        assert f"Page {number} of {len(pages)}" in page_text
        assert "CRF" in page_text, f"no table header on page {number}"
    crfs = re.findall(r"\bTS\d{6}\b", text)
    assert len(crfs) == expected["rows"] and crfs == sorted(crfs)
    assert "Totals" in pages[-1]
    assert f"R${expected['charged'] / 100:,.2f}" in pages[-1]


def test_dashboard_charts_fit_a_tablet_and_their_numbers_match_the_ledger(
    small_office, new_context
):
    viewport = {"width": 800, "height": 1280}
    month = dt.datetime.now(TZ).date().replace(day=1)
    page = new_context(viewport=viewport, base_url=small_office.base_url).new_page()
    log_in(page, small_office)
    widths = page.evaluate(
        "() => ({doc: document.documentElement.scrollWidth, view: window.innerWidth})"
    )
    assert widths["doc"] <= widths["view"], widths
    for service, label in (("cable", "Cable TV"), ("broadband", "Broadband")):
        card = page.locator(f"[data-chart=collections-{service}]")
        svg = card.locator("svg").bounding_box()
        assert svg is not None
        assert svg["width"] >= 300 and svg["x"] + svg["width"] <= viewport["width"]
        # The same figures as a table, one click away, for screen readers and exact numbers.
        card.get_by_text("The numbers").click()
        row = card.get_by_role("row", name=re.compile(f"{month:%B} {month.year}"))
        assert row.is_visible()
        paid = ledger(small_office, month, paid=True, services=(service,))
        unpaid = ledger(small_office, month, paid=False, services=(service,))
        received = paid["paid"] + unpaid["paid"]
        pending = unpaid["charged"] - unpaid["paid"]
        cells = row.get_by_role("cell").all_inner_texts()
        assert cells == [f"R${received / 100:,.2f}", f"R${pending / 100:,.2f}"], label
