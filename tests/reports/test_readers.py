"""The report files open in the programs an office uses, not only in the libraries that wrote
them: LibreOffice Calc loads the Excel file without complaint and shows the same rows and totals;
poppler (the engine of many PDF viewers) reads the PDF without a syntax warning, A4 landscape.

LibreOffice (Debian's ``libreoffice-calc-nogui``) and poppler-utils are installed by ``.ci/run``.
Without them these tests are skipped, unless ``CI`` is set: then they fail.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from appliance import i18n
from appliance.reports import service as reports
from tests.conftest import run
from tests.helpers import SYSTEM


def need(program: str, package: str) -> str:
    found = shutil.which(program)
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"{program} is missing and CI is set: install Debian's {package}")
    pytest.skip(f"{program} is missing (apt-get install {package}); set CI=1 to make this fail")


def make(settings, **filters) -> Path:
    data = {"year": 2026, "month": 10, "file_type": "xlsx", **filters}
    with i18n.use_locale("en"):
        job = run(reports.create_report(data, actor=SYSTEM, settings=settings))
    assert job["status"] == "done"
    return reports.file_path(settings, job)


def amount(text: str) -> Decimal:
    """``R$ 1,234.50`` as LibreOffice shows it -> ``Decimal('1234.50')``."""
    return Decimal(re.sub(r"[^0-9.-]", "", text))


def noise_free(stderr: str) -> list[str]:
    # LibreOffice says it could not start Java on machines without one; that is about the
    # machine, not the file, and no spreadsheet needs Java.
    return [line for line in stderr.splitlines() if line.strip() and "javaldx" not in line]


def calc_csv(xlsx: Path, tmp_path: Path) -> list[list[str]]:
    """The first sheet as LibreOffice Calc shows it, exported to CSV (UTF-8, formatted text)."""
    soffice = need("libreoffice", "libreoffice-calc-nogui")
    out = tmp_path / "csv"
    done = subprocess.run(
        [
            soffice,
            "--headless",
            f"-env:UserInstallation={(tmp_path / 'lo-profile').as_uri()}",
            "--convert-to",
            "csv:Text - txt - csv (StarCalc):44,34,76,1",
            "--outdir",
            str(out),
            str(xlsx),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not noise_free(done.stderr), done.stderr
    with open(out / (xlsx.stem + ".csv"), newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


@pytest.mark.parametrize(
    ("classification", "service", "expected"),
    [
        # The two reports the "done when" names, on the October ledger of conftest.py.
        ("unpaid", "broadband", ["ana", "carla"]),
        ("paid", "cable", ["ana", "bruno", "elisa"]),
    ],
)
def test_libreoffice_opens_the_excel_report_with_the_same_rows_and_totals(
    settings, office, tmp_path, classification, service, expected
):
    xlsx = make(settings, service=service, classification=classification, file_type="xlsx")
    sheet = calc_csv(xlsx, tmp_path)
    assert sheet[0][0] == "Test Office"
    header = sheet[4]
    rows = [dict(zip(header, r, strict=True)) for r in sheet[5:-1]]
    totals = dict(zip(header, sheet[-1], strict=True))
    assert [r["CRF"] for r in rows] == [office.crf[k] for k in expected]
    assert totals["CRF"] == f"Total: {len(expected)} rows"
    for column in ("Charged", "Paid") + (("Amount due",) if classification == "unpaid" else ()):
        assert totals[column].startswith("R$"), totals
        assert amount(totals[column]) == sum(amount(r[column]) for r in rows), column
    if classification == "unpaid":
        # Ana owes September and the rest of October: 89.90 + 49.90; Carla all of October.
        assert amount(totals["Amount due"]) == Decimal("139.80") + Decimal("89.90")
        assert totals["Months pending"] == "3"
    else:
        assert amount(totals["Charged"]) == 3 * Decimal("49.90")
        # The last instalment's date, in the file's unambiguous day format.
        assert rows[1]["Paid on"] == "2026-10-20"


def test_an_empty_excel_report_opens_in_libreoffice_with_zero_totals(settings, office, tmp_path):
    sheet = calc_csv(make(settings, month=1, service="both", classification="paid"), tmp_path)
    header, totals = sheet[4], dict(zip(sheet[4], sheet[-1], strict=True))
    assert header[0] == "CRF" and len(sheet) == 6
    assert totals["CRF"] == "Total: 0 rows" and amount(totals["Charged"]) == 0


@pytest.mark.parametrize(
    ("classification", "service", "expected", "charged"),
    [
        ("paid", "cable", ["ana", "bruno", "elisa"], "R$149.70"),
        ("paid", "broadband", ["gil"], "R$89.90"),
        ("unpaid", "cable", ["hugo"], "R$49.90"),
        ("unpaid", "broadband", ["ana", "carla"], "R$179.80"),
    ],
)
def test_poppler_reads_the_pdf_report_without_complaint(
    settings, office, classification, service, expected, charged
):
    pdfinfo = need("pdfinfo", "poppler-utils")
    pdf = make(settings, service=service, classification=classification, file_type="pdf")
    info = subprocess.run([pdfinfo, str(pdf)], capture_output=True, text=True, check=True)
    assert info.stderr == ""
    assert re.search(r"Page size:\s+841\.89 x 595\.2\d+ pts \(A4\)", info.stdout), info.stdout
    text = subprocess.run(
        [need("pdftotext", "poppler-utils"), "-layout", str(pdf), "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert text.stderr == ""
    title = "Paid charges report" if classification == "paid" else "Unpaid charges report"
    assert title in text.stdout and "Page 1 of 1" in text.stdout
    assert re.findall(r"\bTS\d{6}\b", text.stdout) == [office.crf[k] for k in expected]
    totals = text.stdout[text.stdout.index("Totals") :]
    assert charged in totals
