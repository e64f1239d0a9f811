"""The foundation's main path through the pages: admin logs in, changes the temporary
password, adds a plan and a customer, finds the customer; the customer logs in."""

from __future__ import annotations

from appliance.accounts import service as accounts
from tests.conftest import run
from tests.helpers import field_error, html, login, post_form


def test_first_admin_to_customer_dashboard(client, client2, settings):
    username, password = run(accounts.ensure_first_admin())
    login(client, username, password)
    # A temporary password allows nothing but changing it.
    assert (
        client.get("/customers", follow_redirects=False).headers["location"] == "/account/password"
    )
    r = post_form(
        client,
        "/account/password",
        {"current": password, "new": "office-pass-2026", "confirm": "office-pass-2026"},
    )
    assert r.status_code == 200
    assert client.get("/customers").status_code == 200

    r = post_form(
        client,
        "/plans",
        {"service": "cable", "name": "Básico", "monthly_price": "49,90"},
        page="/plans/new",
    )
    assert r.status_code == 200 and "Básico" in r.text
    r = post_form(
        client,
        "/plans",
        {"service": "broadband", "name": "Fibra 100", "monthly_price": "89.90"},
        page="/plans/new",
    )
    page = html(client.get("/customers/new"))
    cable = page.find("select", attrs={"name": "cable_plan"}).find_all("option")[1]["value"]
    bb = page.find("select", attrs={"name": "broadband_plan"}).find_all("option")[1]["value"]

    # A bad e-mail keeps what was typed and says what is wrong at the field.
    form = {
        "name": "João da Silva",
        "mobile": "(11) 91234-5678",
        "email": "joao@",
        "house": "12",
        "area": "Centro",
        "cable_plan": cable,
        "cable_registered_on": "2026-01-10",
        "broadband_plan": bb,
        "broadband_registered_on": "2026-02-01",
    }
    r = post_form(client, "/customers", form, page="/customers/new")
    assert r.status_code == 422
    page = html(r)
    assert field_error(page, "email")
    assert page.find("input", attrs={"name": "name"})["value"] == "João da Silva"

    form["email"] = "joao@example.com"
    r = post_form(client, "/customers", form, page="/customers/new")
    assert r.status_code == 200
    page = html(r)
    crf = page.find("h1").find("small").get_text()
    assert crf.startswith("TS")

    r = client.get("/customers", params={"q": "joao SILVA"})
    rows = html(r).select("table.results tbody tr")
    assert [row.find("td").get_text(strip=True) for row in rows] == [crf]

    customer_id = page.find("form", action=lambda a: a and a.endswith("/archive"))["action"]
    customer_id = customer_id.split("/")[2]
    from tests.helpers import customer_password

    pw = run(customer_password(customer_id))
    login(client2, crf.lower(), pw)
    r = client2.get("/portal")
    assert r.status_code == 200
    text = html(r).get_text()
    assert "Básico" in text and "Fibra 100" in text
    # A customer cannot reach the office's pages.
    assert client2.get("/customers").status_code == 403
