"""Invoice pages and API through a real payment: who may see what, the PDF from the cache, a
missing or damaged PDF rendered again from the database, and a friendly page when that fails."""

from __future__ import annotations

import io
import shutil

from pypdf import PdfReader

from appliance.invoices import service as invoices
from tests.conftest import run
from tests.helpers import html, login
from tests.invoices.conftest import with_logins
from tests.invoices.test_render import MM, pdf_text


def cached(settings, number: str, layout: str = "a4"):
    return invoices.pdf_path(settings, number, layout, "en")


def token(client, username: str, password: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert r.status_code == 201, r.text
    return {"authorization": f"Bearer {r.json()['access_token']}"}


def test_payment_renders_the_pdf_in_the_background_and_staff_download_it(client, settings, office):
    number = office["number"]
    # The render task ran when the payment was recorded (inline: the test queue is immediate).
    path = cached(settings, number)
    assert invoices.is_intact(path)
    before = path.stat().st_mtime_ns

    login(client, office["agent"]["username"])
    r = client.get(f"/invoices/{number}/pdf")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"] == f'attachment; filename="{number}.pdf"'
    assert r.content == path.read_bytes()
    assert path.stat().st_mtime_ns == before  # served from the cache, not rendered again
    _, text = pdf_text(r.content)
    assert number in text and "R$100.00" in text and "Ana Souza" in text
    assert "January" in text or "Cable 100" in text
    # The same file under the other spelling of the address.
    assert client.get(f"/invoices/{number}.pdf").content == r.content


def test_printable_page_for_staff(client, settings, office):
    number = office["number"]
    login(client, office["agent"]["username"])
    r = client.get(f"/invoices/{number}")
    assert r.status_code == 200
    assert "script-src 'self'" in r.headers["content-security-policy"]
    page = html(r)
    assert page.find(class_="number").get_text() == number
    assert office["ana"]["crf"] in page.get_text()
    paid = page.select_one("tr.paid td").get_text(" ", strip=True)
    assert paid == "R$100.00"
    assert page.find("button", attrs={"data-print": True}) is not None
    assert page.find("a", href=f"/invoices/{number}/pdf") is not None


def test_receipt_layouts_through_the_routes(client, settings, office):
    number = office["number"]
    login(client, office["agent"]["username"])
    page = html(client.get(f"/invoices/{number}", params={"layout": "58mm", "autoprint": "1"}))
    assert page.body["class"] == ["layout-58mm"] and page.body.has_attr("data-autoprint")
    r = client.get(f"/invoices/{number}/pdf", params={"layout": "80mm"})
    assert r.status_code == 200
    box = PdfReader(io.BytesIO(r.content)).pages[0].mediabox
    assert round(float(box.width) / MM) == 80
    assert cached(settings, number, "80mm").exists()


def test_customer_sees_only_their_own_invoices(client, client2, settings, office):
    office = with_logins(settings, office)
    number = office["number"]
    login(client, office["ana"]["crf"].lower(), office["ana_password"])
    assert client.get(f"/invoices/{number}").status_code == 200
    assert client.get(f"/invoices/{number}/pdf").status_code == 200

    login(client2, office["bruno"]["crf"].lower(), office["bruno_password"])
    for path in (f"/invoices/{number}", f"/invoices/{number}/pdf", f"/invoices/{number}.pdf"):
        r = client2.get(path)
        assert r.status_code == 404, path
        assert number not in html(r).find("main").get_text()
    # Someone else's invoice answers exactly like one that does not exist.
    missing = client2.get("/invoices/TS-2026-999999")
    assert missing.status_code == 404
    assert (
        html(missing).find("h1").get_text()
        == html(client2.get(f"/invoices/{number}")).find("h1").get_text()
    )


def test_anonymous_visitors_are_sent_to_log_in(client, office):
    r = client.get(f"/invoices/{office['number']}/pdf", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_malformed_numbers_are_not_found(client, office):
    login(client, office["agent"]["username"])
    for bad in ("TS-2026-1", "nothing", "TS-2026-000001%00", "TS-2026-000001..%5Cx"):
        assert client.get(f"/invoices/{bad}/pdf").status_code == 404, bad
        assert client.get(f"/invoices/{bad}").status_code == 404, bad


def test_missing_or_damaged_pdf_is_rendered_again_from_the_database(client, settings, office):
    number = office["number"]
    path = cached(settings, number)
    login(client, office["agent"]["username"])

    path.unlink()
    r = client.get(f"/invoices/{number}/pdf")
    assert r.status_code == 200 and invoices.is_intact(path)
    assert number in pdf_text(r.content)[1]

    path.write_bytes(path.read_bytes()[:2000])  # cut short, as by a power cut
    r = client.get(f"/invoices/{number}/pdf")
    assert r.status_code == 200 and invoices.is_intact(path)
    assert "R$100.00" in pdf_text(r.content)[1]


def test_a_failed_render_gives_a_friendly_answer_not_a_500(client, settings, office):
    number = office["number"]
    shutil.rmtree(settings.invoices_dir)
    settings.invoices_dir.write_text("a file where the folder should be")
    login(client, office["agent"]["username"])
    r = client.get(f"/invoices/{number}/pdf")
    assert r.status_code == 503
    page = html(r)
    assert page.find("h1").get_text() == "The PDF is not ready"
    assert page.find("a", href=f"/invoices/{number}") is not None
    assert "Traceback" not in r.text and "Error" not in r.text
    # The printable page needs no PDF and still works.
    assert client.get(f"/invoices/{number}").status_code == 200
    # The API says the same in JSON.
    staff = token(client, office["agent"]["username"], "correct-horse-42")
    r = client.get(f"/api/v1/invoices/{number}/pdf", headers=staff)
    assert r.status_code == 503 and r.json()["error"] == "pdf_unavailable"


def test_reversal_shows_on_the_page_and_in_a_fresh_pdf(client, settings, office):
    from appliance.billing import service as billing
    from tests.helpers import SYSTEM

    number = office["number"]
    run(billing.reverse_payment(number, "Paid twice", actor=SYSTEM, settings=settings))
    login(client, office["agent"]["username"])
    banner = html(client.get(f"/invoices/{number}")).find(class_="reversed")
    assert banner is not None and "Paid twice" in banner.get_text()
    text = pdf_text(client.get(f"/invoices/{number}/pdf").content)[1]
    assert "REVERSED" in text and "Paid twice" in text


def test_api_get_invoice_and_pdf_with_the_same_ownership_rule(client, settings, office):
    office = with_logins(settings, office)
    number = office["number"]
    staff = token(client, office["agent"]["username"], "correct-horse-42")
    r = client.get(f"/api/v1/invoices/{number}", headers=staff)
    assert r.status_code == 200
    body = r.json()
    assert body["number"] == number and body["amount_paid"] == 10000
    assert body["customer"]["crf"] == office["ana"]["crf"]
    assert body["lines"][0]["service"] == "cable" and body["lines"][0]["amount"] == 10000
    assert body["mode"] == "cash" and body["reversed"] is False
    assert body["pdf_url"] == f"/api/v1/invoices/{number}/pdf"
    r = client.get(body["pdf_url"], headers=staff)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF-")

    ana = token(client, office["ana"]["crf"], office["ana_password"])
    assert client.get(f"/api/v1/invoices/{number}", headers=ana).status_code == 200
    bruno = token(client, office["bruno"]["crf"], office["bruno_password"])
    for path in (f"/api/v1/invoices/{number}", f"/api/v1/invoices/{number}/pdf"):
        r = client.get(path, headers=bruno)
        assert r.status_code == 404 and r.json()["error"] == "not_found"
