"""The admin's dashboard page shows the admin's own change on the next load, in each language."""

from __future__ import annotations

from tests.billing.conftest import pay, subscriber
from tests.conftest import run
from tests.helpers import html, login, make_staff


def figure(page, name: str) -> str:
    return page.find(attrs={"data-money": name}).get_text()


def test_a_payment_shows_on_the_next_load_of_a_page_served_from_memory(client, settings, plans):
    customer = run(subscriber(settings, plans, cable="2026-10-01"))
    login(client, run(make_staff("admin"))["username"])
    assert figure(html(client.get("/")), "cable-received") == "R$0.00"
    assert figure(html(client.get("/")), "cable-received") == "R$0.00"
    run(pay(settings, customer, "200.00"))
    page = html(client.get("/"))
    assert figure(page, "cable-received") == "R$200.00"
    rows = page.find(attrs={"data-chart": "collections-cable"}).find("tbody").find_all("tr")
    november = next(tr for tr in rows if tr.find("th").get_text(strip=True) == "November 2026")
    assert [td.get_text(strip=True) for td in november.find_all("td")] == ["R$100.00", "R$0.00"]


def test_each_language_gets_its_own_page(client, settings, plans):
    run(subscriber(settings, plans, cable="2026-10-01"))
    login(client, run(make_staff("admin"))["username"])
    english = html(client.get("/"))
    client.cookies.set("ctvms_lang", "pt_BR")
    portuguese = html(client.get("/"))
    assert english.find("html")["lang"] == "en" and portuguese.find("html")["lang"] == "pt-BR"
    assert figure(english, "cable-pending") == "R$100.00"  # November
    assert figure(portuguese, "cable-pending") == "R$\xa0100,00"
    title = portuguese.find(attrs={"data-chart": "statuses"}).find("h3").get_text()
    assert title != english.find(attrs={"data-chart": "statuses"}).find("h3").get_text()
