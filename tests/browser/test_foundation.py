"""Issue 2 in a real browser: the admin adds a plan and a customer through the forms, finds the
customer by part of the name typed without accents (HTMX results while typing), opens them;
the customer list fits a tablet and a phone without sideways scrolling."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

NAME = "Zélia Câmara Ávila"  # no demo customer has this first or last name


def query_of(url: str) -> str | None:
    return parse_qs(urlsplit(url).query).get("q", [None])[0]


def log_in(page, username: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Username, customer number or e-mail").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/$"))


def test_admin_adds_plan_and_customer_then_finds_them_by_partial_name(
    live_server, mail_server, page
):
    # Sixty other customers, so the new one is not on the first page of the list.
    live_server.ctvms("demo", "--customers", "60", "--years", "1")
    log_in(page, live_server.admin_username, live_server.admin_password)

    page.goto("/plans/new")
    page.get_by_label("Service").select_option("cable")
    page.get_by_label("Name").fill("Cabo Teste")
    page.get_by_label("Monthly price").fill("59,90")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r"/plans$"))
    assert page.get_by_role("cell", name="Cabo Teste").is_visible()

    page.goto("/customers/new")
    page.get_by_label("Full name").fill(NAME)
    page.get_by_label("Mobile").fill("(11) 97654-3210")
    page.get_by_label("E-mail").fill("zelia@example.com")
    page.get_by_label("House name or number").fill("77")
    page.get_by_role("textbox", name="Area", exact=True).fill("Centro")
    cable = page.get_by_role("group", name="Cable TV")
    plan = cable.get_by_label("Plan")
    plan.select_option(plan.locator("option", has_text="Cabo Teste").get_attribute("value"))
    cable.get_by_label("Set-top box chip id").fill("STB-0042")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r"/customers/[0-9a-f-]{36}\?created=1$"))
    crf = page.locator("h1 small").inner_text().strip()
    assert re.fullmatch(r"TS\d{6}", crf)
    # The welcome e-mail reaches the office's SMTP server through the worker.
    welcome = mail_server.wait_for(lambda m: m["to"] == "zelia@example.com")
    assert crf in welcome.get_body(("plain",)).get_content()

    page.goto("/customers")
    rows = page.locator("#results table.results tbody tr")
    assert rows.count() == 25
    assert page.get_by_role("link", name=NAME).count() == 0

    box = page.get_by_role("searchbox")
    with page.expect_response(
        lambda r: r.request.headers.get("hx-request") == "true" and query_of(r.url) == "zelia cam"
    ):
        box.press_sequentially("zelia cam", delay=40)
    hit = rows.filter(has_text=NAME)
    hit.wait_for()
    assert rows.count() == 1
    assert crf in hit.inner_text()
    # The results came by HTMX: the search box kept what was typed, the address followed.
    assert box.input_value() == "zelia cam"
    assert query_of(page.url) == "zelia cam"

    hit.get_by_role("link", name=NAME).click()
    page.wait_for_url(re.compile(r"/customers/[0-9a-f-]{36}$"))
    assert NAME in page.locator("h1").inner_text()
    assert page.get_by_text("STB-0042").is_visible()


@pytest.mark.parametrize(
    "viewport",
    [{"width": 800, "height": 1280}, {"width": 390, "height": 844}],
    ids=["tablet", "phone"],
)
def test_customer_list_fits_tablet_and_phone(live_server, new_context, viewport, tmp_path):
    live_server.ctvms("demo", "--customers", "30", "--years", "1")
    page = new_context(viewport=viewport).new_page()
    log_in(page, live_server.admin_username, live_server.admin_password)
    page.goto("/customers")
    page.locator("#results table.results tbody tr").first.wait_for()
    page.screenshot(path=str(tmp_path / f"customers-{viewport['width']}.png"), full_page=True)
    widths = page.evaluate(
        "() => ({doc: document.documentElement.scrollWidth, body: document.body.scrollWidth,"
        " view: window.innerWidth})"
    )
    assert widths["doc"] <= widths["view"], widths
    assert widths["body"] <= widths["view"], widths
    # The wide table scrolls inside its own box instead of widening the page.
    wrap = page.locator(".table-wrap").bounding_box()
    assert wrap is not None and wrap["x"] >= 0 and wrap["x"] + wrap["width"] <= viewport["width"]
