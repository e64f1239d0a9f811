"""Stored and reflected script: a payload in every free-text field the office can type (customer
profile and contacts, device id, plan name and description, complaint message, note and
resolution, reversal reason), then every page of the route table fetched by an admin, an agent
and the customer, parsed, and checked that the payload is only ever text."""

from __future__ import annotations

import dataclasses
from typing import Any

from appliance import clock
from tests.conftest import run
from tests.helpers import SYSTEM, make_plan
from tests.security.caller import Caller
from tests.security.matrix import routes
from tests.security.world import CUSTOMER_PASSWORD, Account, Person, World


def payload(tag: str) -> str:
    """Breaks out of text, double- and single-quoted attributes alike if left unescaped."""
    return f"\"'><script>{tag}()</script><img src=x onerror={tag}()>"


# Fields with a small length limit get a shorter payload.
SHORT = {
    "postal_code": '"><b id=xsspc>',
    "id_doc_type": "\"'><b id=xssdoctype>",
    "id_doc_number": "\"'><b id=xssdocnumber>",
}
FIELDS = ["name", "house", "area", "district", "state", "country", "id_doc_type", "id_doc_number"]


async def _seed(world: World) -> tuple[list[Account], dict[str, str]]:
    from appliance.accounts import service as accounts
    from appliance.accounts.tables import User
    from appliance.billing import service as billing
    from appliance.complaints import service as complaints
    from appliance.customers import service as customers

    settings = world.settings
    stored: dict[str, str] = {}

    def field(name: str) -> str:
        stored[name] = SHORT.get(name) or payload(f"xss{name.replace('_', '')}")
        return stored[name]

    plan = await make_plan(
        service="broadband", name=field("plan_name"), description=field("plan_description")
    )
    start = clock.today(settings.tz).replace(day=1).isoformat()
    data: dict[str, Any] = {name: field(name) for name in FIELDS}
    data.update(
        postal_code=field("postal_code"),
        mobile="5511977776666",
        email=field("email").replace(" ", "") + "@example.com",
        broadband_plan=str(plan["id"]),
        broadband_registered_on=start,
        broadband_device_id=field("device_id"),
    )
    stored["email"] = data["email"]
    customer = await customers.create_customer(
        data, actor=SYSTEM, settings=settings, confirm_duplicates=True
    )
    user_id = (await User.select(User.id).where(User.customer == customer["id"]))[0]["id"]
    await accounts.set_password(user_id, CUSTOMER_PASSWORD)
    agent = Person("agent", "The Agent", id=world.staff["agent"]["id"])
    admin = Person("admin", "The Admin", id=world.staff["admin"]["id"])
    me = Person("customer", customer["name"], id=user_id, customer_id=customer["id"])

    async def pay() -> str:
        payment = await billing.record_payment(
            customer["id"],
            {"amount": str(plan["monthly_price"] // 100), "mode": "cash", "service": "all"},
            actor=agent,
            settings=settings,
        )
        return payment["number"]

    reversed_number = await pay()
    await billing.reverse_payment(
        reversed_number, field("reversal_reason"), actor=admin, settings=settings
    )
    number = await pay()
    category = complaints.category_choices()[0][0]
    noted = await complaints.raise_complaint(
        customer["id"], category=category, message=field("message"), actor=me, settings=settings
    )
    await complaints.add_note(
        noted["id"], text=field("note"), visible_to_customer=True, actor=admin
    )
    resolved = await complaints.raise_complaint(
        customer["id"], category=category, message=stored["message"], actor=me, settings=settings
    )
    await complaints.resolve_complaint(
        resolved["id"], resolution=field("resolution"), actor=admin, settings=settings
    )
    views = [
        Account("x", customer, user_id, customer["crf"], reversed_number, noted),
        Account("x", customer, user_id, customer["crf"], number, resolved),
    ]
    return views, stored


def _live(response) -> list[str]:
    """The payload's markup found alive in an HTML answer."""
    from tests.helpers import html

    if "html" not in response.headers.get("content-type", ""):
        return []
    found = []
    raw = response.text
    for needle in ("<script>xss", "<b id=xss", "<img src=x"):
        if needle in raw:
            found.append(f"raw {needle!r}")
    page = html(response)
    for tag in page.find_all(True):
        if tag.name == "script" and "xss" in tag.get_text():
            found.append("<script>")
        if (tag.get("id") or "").startswith("xss"):
            found.append(f"<{tag.name} id={tag['id']}>")
        for attribute, value in tag.attrs.items():
            if attribute.startswith("on") and "xss" in str(value):
                found.append(f"<{tag.name} {attribute}>")
    return found


def test_stored_and_reflected_payloads_are_shown_as_text_on_every_page(world, world_app, web):
    views, stored = run(_seed(world))
    failures: list[str] = []
    seen: set[str] = set()
    reflected = payload("xssquery")
    query = {"q": reflected, "next": reflected, "year": reflected, "status": reflected}
    pages = [r for r in routes(world_app) if not r.is_api and not r.is_write]
    # Customer "x" signs in through the Caller's customer A slot.
    as_x = dataclasses.replace(world, a=views[0])
    for actor, key in (("admin", "admin"), ("agent", "agent"), ("x", "a")):
        caller = Caller(web, as_x, key, fresh_sessions=False)
        for route in pages:
            if not route.allows(key):
                continue
            for view in views if route.owned else views[:1]:
                path = route.path(world, view)
                # The whole page, then the HTMX fragment with the payload in the query too.
                for params, extra in ((None, {}), (query, {"hx-request": "true"})):
                    response = _get(caller, route, path, params, extra)
                    if response.status_code >= 500:
                        failures.append(f"{route} as {actor}: {response.status_code}")
                    for problem in _live(response):
                        failures.append(f"{route} as {actor} {params and 'q'}: {problem}")
                    seen.update(n for n, p in stored.items() if p in _text(response))
    assert not failures, "\n".join(sorted(set(failures)))
    # The pages really showed the stored text (escaped), so the check above meant something.
    must_show = {
        "name",
        "house",
        "area",
        "email",
        "plan_name",
        "message",
        "note",
        "resolution",
        "reversal_reason",
    }
    assert must_show <= seen, must_show - seen


def _get(caller: Caller, route, path: str, params, extra: dict[str, str]):
    client = caller.client
    client.cookies.clear()
    client.cookies.set("ctvms_session", caller._token("web", False))
    return client.get(path, params=params, headers=extra, follow_redirects=False)


def _text(response) -> str:
    from tests.helpers import html

    if "html" not in response.headers.get("content-type", ""):
        return ""
    return html(response).get_text()


def test_stored_payloads_are_escaped_in_the_html_of_queued_e_mails(world):
    from appliance.mail.tables import OutboxMessage

    run(_seed(world))
    rows = run(OutboxMessage.select(OutboxMessage.kind, OutboxMessage.body_html))
    kinds = {row["kind"] for row in rows if "xss" in row["body_html"]}
    assert {"complaint_received", "complaint_resolved"} <= kinds
    for row in rows:
        assert "<script>xss" not in row["body_html"], row["kind"]
        assert "<img src=x" not in row["body_html"], row["kind"]
