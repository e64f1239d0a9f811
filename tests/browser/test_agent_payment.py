"""Issue 3 in a real browser: a field agent on a tablet takes cash, the invoice opens printable,
the customer receives the invoice e-mail with the PDF over SMTP, sees the month turn paid in the
portal and opens the invoice from the invoice viewer, and the admin sees the money on the
dashboard."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from appliance import clock, db
from appliance.jobs.queue import configure_queue
from appliance.settings import Settings
from tests.conftest import run
from tests.helpers import customer_password, make_customer, make_plan, make_staff

TABLET = {"width": 800, "height": 1280}
AGENT_PASSWORD = "agent-tablet-pass-31"
EMAIL = "helena.quadros@example.com"


def seed(live_server) -> dict:
    """A cable plan, Helena (connected on the 1st of this month: one month, 100.00, due, below
    the minimum payment so exactly the due is taken) and an agent, written straight into the
    served office's database; the e-mail it queues goes to the server's own worker."""
    settings = Settings.from_env(live_server.env)
    db.configure(settings)
    configure_queue(settings)

    async def rows() -> dict:
        plan = await make_plan(service="cable", name="Cabo Tablet", monthly_price="100.00")
        first = clock.today(settings.tz).replace(day=1).isoformat()
        helena = await make_customer(
            settings,
            name="Helena Quadros",
            email=EMAIL,
            cable_plan=str(plan["id"]),
            cable_registered_on=first,
        )
        agent = await make_staff("agent", "tablet-agent", AGENT_PASSWORD)
        return {
            "helena": helena,
            "helena_password": await customer_password(helena["id"]),
            "agent": agent,
        }

    # Playwright's sync API keeps an event loop running in this thread: seed from another one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: run(rows())).result()


def log_in(page, login: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Username, customer number or e-mail").fill(login)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()


def fits_width(page) -> bool:
    return page.evaluate(
        "() => document.documentElement.scrollWidth <= window.innerWidth"
        " && document.body.scrollWidth <= window.innerWidth"
    )


def test_agent_takes_cash_on_a_tablet_and_everyone_sees_it(live_server, mail_server, new_context):
    office = seed(live_server)
    helena = office["helena"]
    today = clock.today(Settings.from_env(live_server.env).tz)

    # The agent, on a tablet, finds Helena and takes her due in cash.
    tablet = new_context(viewport=TABLET)
    agent = tablet.new_page()
    log_in(agent, "tablet-agent", AGENT_PASSWORD)
    agent.goto("/")
    agent.wait_for_url(re.compile(r"/collect$"))
    search = agent.get_by_role("searchbox")
    search.press_sequentially("helena q", delay=30)
    agent.locator("#pick a", has_text="Helena Quadros").click()
    agent.wait_for_url(re.compile(r"/collect\?customer="))
    assert agent.locator("[data-due]").get_attribute("data-due") == "10000"
    assert agent.get_by_role("textbox", name="Amount").input_value() == "100.00"
    assert agent.get_by_label("Payment mode").input_value() == "cash"
    assert fits_width(agent)
    agent.get_by_role("button", name="Take payment").click()
    agent.wait_for_url(re.compile(r"/collect/receipts/TS-\d{4}-\d{6}$"))
    number = agent.url.rsplit("/", 1)[1]
    assert EMAIL in agent.locator("#email-note").inner_text()
    assert fits_width(agent)

    # The invoice opens printable in its own tab.
    with tablet.expect_page() as opened:
        agent.get_by_role("button", name="Print invoice (A4)").click()
    invoice = opened.value
    invoice.wait_for_load_state()
    assert number in invoice.content()
    assert "Helena Quadros" in invoice.content()

    # The invoice e-mail with its PDF reaches the customer through the worker and SMTP.
    message = mail_server.wait_for(
        lambda m: m["to"] == EMAIL and any(True for _ in m.iter_attachments()), timeout=60
    )
    pdf = next(message.iter_attachments())
    assert pdf.get_content_type() == "application/pdf"
    assert number in pdf.get_filename()
    assert pdf.get_content().startswith(b"%PDF")

    # Helena sees this month paid and opens the invoice from the invoice viewer.
    customer = new_context(viewport=TABLET).new_page()
    log_in(customer, helena["crf"], office["helena_password"])
    customer.goto("/portal/payments")
    cell = customer.locator(f'tr[data-service="cable"] td[data-month="{today.month}"]')
    assert cell.get_attribute("data-state") == "paid"
    customer.goto("/portal/invoices")
    customer.get_by_label("Year").select_option(str(today.year))
    customer.get_by_label("Month").select_option(str(today.month))
    customer.get_by_role("button", name="Show").click()
    customer.get_by_role("link", name=number).click()
    customer.wait_for_url(re.compile(rf"/invoices/{number}$"))
    assert "Helena Quadros" in customer.content()

    # The admin sees the money on the dashboard.
    admin = new_context().new_page()
    log_in(admin, live_server.admin_username, live_server.admin_password)
    admin.goto("/")
    received = admin.locator('[data-money="cable-received"]').inner_text()
    assert received.replace("\xa0", "") in ("R$100.00", "R$100,00")
