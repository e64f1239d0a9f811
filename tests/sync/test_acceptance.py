"""The sync issue's "Done when", played as the people in it would, every node a real process on
127.0.0.1: central (``ctvms serve`` on PostgreSQL) and the office boxes (``ctvms serve`` on their
own SQLite folders): AA, BB and AA's second counter AA2, enrolled with codes the owner takes from
the Offices page, synced with ``ctvms sync once``.

The offices work offline for a while: customers and payments at the counters, a complaint at BB,
a customer who pays the same month at both of AA's counters, and that customer renamed at AA
while the owner renames her at central. Then every box syncs; AA's round is killed with SIGKILL
after its first batch reached central and is run again. At the end each box holds exactly what
central holds of its office, and the owner's pages at central show every payment once with its
office, each customer's due and credit as the boxes have them, the overpayment and the rename
conflict for review, the complaint, and dashboards per office that add up to the consolidated
one.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from bs4 import BeautifulSoup

from appliance import clock
from bench.server import ServerProcess, ctvms_command
from tests.conftest import make_settings, run
from tests.helpers import STAFF_PASSWORD, html, login, post_form
from tests.sync.conftest import Box, Central
from tests.sync.helpers import assert_converged

OWNER = "owner"
ADMIN = "admin"
AGENT = "agent"
# uvicorn closes a connection idle for 5 s, httpx's default keep-alive: a request on a connection
# the server is closing at that moment is reset. Idle connections are dropped sooner here.
LIMITS = httpx.Limits(keepalive_expiry=1)
AA_CUSTOMERS = 14  # enough offline work for many batches of 5: AA's round can be cut
BB_CUSTOMERS = 3


@dataclass
class Office:
    """One office box: its node (for reading its database), its server and an admin's API.
    The customers and payments are those it registered and took."""

    code: str
    node: Box
    server: ServerProcess
    api: httpx.Client | None = None
    customers: dict[str, str] = field(default_factory=dict)  # name -> id
    payments: list[str] = field(default_factory=list)  # invoice numbers
    plan: str = ""

    def ctvms(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.server.ctvms(*args, **kwargs)


# -- the people and their tools ---------------------------------------------------------------


def create_account(server: ServerProcess, role: str, username: str) -> None:
    server.ctvms(
        "users", "create", "--role", role, "--username", username, input=STAFF_PASSWORD + "\n"
    )


def browser(server: ServerProcess, username: str) -> httpx.Client:
    """A person logged in to a server's web pages (cookies and CSRF tokens like a browser)."""
    client = httpx.Client(base_url=server.base_url, timeout=30, limits=LIMITS)
    login(client, username)
    return client


def api_client(server: ServerProcess, username: str) -> httpx.Client:
    """A person using the JSON API with a bearer token."""
    client = httpx.Client(base_url=server.base_url + "/api/v1", timeout=30, limits=LIMITS)
    token = client.post("/auth/token", json={"username": username, "password": STAFF_PASSWORD})
    assert token.status_code == 201, token.text
    client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    return client


def form_values(page: BeautifulSoup, action: str) -> dict[str, str]:
    """What a browser would submit from the page's form posting to ``action``, as it stands."""
    form = page.find("form", action=action)
    values: dict[str, str] = {}
    for node in form.find_all(["input", "select", "textarea"]):
        name = node.get("name")
        if not name or node.get("disabled") is not None:
            continue
        if node.name == "select":
            chosen = node.find("option", selected=True) or node.find("option")
            values[name] = chosen.get("value", "") if chosen else ""
        elif node.name == "textarea":
            values[name] = node.get_text()
        elif node.get("type") in ("checkbox", "radio"):
            if node.has_attr("checked"):
                values[name] = node.get("value", "on")
        elif node.get("type") not in ("submit", "button"):
            values[name] = node.get("value", "")
    return values


# -- central and the boxes --------------------------------------------------------------------


def enroll_command(response: httpx.Response) -> list[str]:
    """The ``ctvms sync enroll ...`` command the Offices page tells the owner to run on the box
    (without the leading ``ctvms``), checked to carry the one-time code it shows."""
    assert response.status_code == 200, response.text[:500]
    shown = html(response).select_one("#enroll-code")
    command = shlex.split(shown.select_one(".enroll-command").get_text())
    assert command[:3] == ["ctvms", "sync", "enroll"]
    assert f"--code={shown.select_one('[data-code]')['data-code']}" in command
    return command[1:]


def owner_creates_office(owner: httpx.Client, code: str) -> list[str]:
    """The owner registers an office on the Offices page; the command for its first box."""
    return enroll_command(
        post_form(owner, "/sync/offices", {"code": code, "name": f"Office {code}"})
    )


def owner_creates_office_on_the_command_line(central: Central, code: str) -> list[str]:
    """``ctvms sync office CODE`` at central; the command it prints for the box, with central's
    address where it says URL."""
    done = central.server.ctvms("sync", "office", code, "--name", f"Office {code}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("On the box: "))
    command = shlex.split(line.removeprefix("On the box: ").replace(" URL ", f" {central.url} "))
    assert command[:3] == ["ctvms", "sync", "enroll"]
    return command[1:]


def owner_issues_new_code(owner: httpx.Client, code: str) -> list[str]:
    """The owner asks the Offices page for another code: the command for a second box."""
    return enroll_command(post_form(owner, f"/sync/offices/{code}/code", {}, page="/sync/offices"))


def set_up_box(
    folder: Path,
    template: Path,
    code: str,
    enroll: list[str],
    *,
    agent: bool = False,
    name: str = "",
) -> Office:
    """A new box: its database, ``ctvms sync enroll``, its admin (and a counter agent), then
    ``ctvms serve``."""
    name = name or code
    data = folder / f"box-{name}"
    data.mkdir()
    shutil.copy(template, data / "ctvms.sqlite3")
    node = Box(make_settings(data, office_code=code), name)
    # Partial payments below the usual minimum keep the story's amounts small.
    server = ServerProcess(data, env={**node.env(), "CTVMS_MIN_PAYMENT": "10"})
    office = Office(code, node, server)
    enrolled = office.ctvms(*enroll)
    assert f"office {code}" in enrolled.stdout
    create_account(server, "admin", ADMIN)
    if agent:
        create_account(server, "agent", AGENT)
    server.start()
    office.api = api_client(server, ADMIN)
    return office


@pytest.fixture
def offices(central, tmp_path, sqlite_template) -> Iterator[tuple[Any, ...]]:
    """The owner logged in at central, and the boxes enrolled and serving: AA (office made on
    the Offices page), BB (made with ``ctvms sync office``), and a second box of AA (its other
    counter)."""
    create_account(central.server, "owner", OWNER)
    owner = browser(central.server, OWNER)
    boxes: list[Office] = []
    try:
        command = owner_creates_office(owner, "AA")
        boxes.append(set_up_box(tmp_path, sqlite_template, "AA", command))
        command = owner_creates_office_on_the_command_line(central, "BB")
        # BB's counter clerk takes the complaint.
        boxes.append(set_up_box(tmp_path, sqlite_template, "BB", command, agent=True))
        command = owner_issues_new_code(owner, "AA")
        boxes.append(set_up_box(tmp_path, sqlite_template, "AA", command, name="AA2"))
        yield owner, *boxes
    finally:
        owner.close()
        for box in boxes:
            if box.api is not None:
                box.api.close()
            box.server.stop()


# -- work at the counter ----------------------------------------------------------------------


def admin_creates_plan(office: Office) -> None:
    response = office.api.post(
        "/plans", json={"service": "cable", "name": "Cabo Básico", "monthly_price": "100.00"}
    )
    assert response.status_code == 201, response.text
    office.plan = response.json()["id"]


def admin_registers_customer(office: Office, name: str) -> str:
    today = clock.today(office.node.settings.tz).isoformat()
    body = {
        "name": name,
        "mobile": f"55119{uuid.uuid4().int % 10**8:08d}",
        "house": str(len(office.customers) + 1),
        "area": "Centro",
        "cable": {"plan": office.plan, "registered_on": today},
        "confirm_duplicates": True,
    }
    response = office.api.post("/customers", json=body)
    assert response.status_code == 201, response.text
    office.customers[name] = response.json()["id"]
    return office.customers[name]


def counter_finds_customer(office: Office, name: str) -> str:
    """The counter looks a customer up by name (one registered at another box)."""
    response = office.api.get("/customers", params={"search": name})
    assert response.status_code == 200, response.text
    found = [c["id"] for c in response.json()["items"] if c["name"] == name]
    assert len(found) == 1, response.json()
    office.customers[name] = found[0]
    return found[0]


def counter_takes_payment(office: Office, name: str, amount: str) -> dict[str, Any]:
    response = office.api.post(
        "/payments",
        json={"customer_id": office.customers[name], "amount": amount, "mode": "cash"},
        headers={"Idempotency-Key": f"pay-{uuid.uuid4()}"},
    )
    assert response.status_code == 201, response.text
    office.payments.append(response.json()["number"])
    return response.json()


def agent_raises_complaint_for(office: Office, name: str, message: str) -> str:
    """The customer phones the office; the agent at the counter raises it for them."""
    agent = api_client(office.server, AGENT)
    with closing(agent):
        response = agent.post(
            "/complaints",
            json={
                "customer_id": office.customers[name],
                "category": "no_signal",
                "message": message,
            },
        )
    assert response.status_code == 201, response.text
    return response.json()["number"]


def admin_edits_customer(office: Office, who: str, **fields: str) -> None:
    response = office.api.patch(f"/customers/{office.customers[who]}", json=fields)
    assert response.status_code == 200, response.text


def owner_edits_customer_page(owner: httpx.Client, customer_id: str, **fields: str) -> None:
    """The owner opens the customer's edit page at central, changes fields and saves."""
    page = html(owner.get(f"/customers/{customer_id}/edit"))
    values = {**form_values(page, f"/customers/{customer_id}"), **fields}
    response = owner.post(f"/customers/{customer_id}", data=values, follow_redirects=False)
    errors = [(e.get("id"), e.get_text(" ", strip=True)) for e in html(response).select(".error")]
    assert response.status_code == 303, errors


# -- syncing ----------------------------------------------------------------------------------


def sync_once(office: Office, *args: str) -> dict[str, Any]:
    done = office.ctvms("sync", "once", *args, timeout=120)
    return json.loads(done.stdout)


def sent_changes(office: Office) -> tuple[int, int]:
    """(sent, all) of the box's own changes, read from its database file."""
    path = office.node.settings.sqlite_path
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(sent), 0), count(*) FROM sync_changes WHERE origin = 'local'"
        ).fetchone()
    return int(row[0]), int(row[1])


def sync_killed_after_first_batch(office: Office, *, batch: int) -> tuple[int, int]:
    """``ctvms sync once --batch N`` killed with SIGKILL as soon as central has taken (and the
    box marked) its first batch; (sent, all) changes when it died."""
    process = subprocess.Popen(
        [*ctvms_command(), "sync", "once", "--batch", str(batch)],
        env=office.server.env,
        cwd=office.server.data_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while sent_changes(office)[0] == 0:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the first batch never reached central"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    return sent_changes(office)


# -- what the owner sees at central -----------------------------------------------------------


def listed_payments(owner: httpx.Client) -> list[tuple[str, str]]:
    """(invoice number, office) of every row of the owner's All payments page."""
    page = html(owner.get("/payments"))
    assert not page.select("nav.pager"), "the test expects every payment on one page"
    return [(r["data-number"], r["data-office"]) for r in page.select("table#payments tbody tr")]


def due_and_credit(api: httpx.Client, customer_id: str) -> tuple[int, int]:
    response = api.get("/payments", params={"customer_id": customer_id})
    assert response.status_code == 200, response.text
    return response.json()["amount_due"], response.json()["credit"]


def minor_units(text: str) -> int:
    return int(re.sub(r"\D", "", text))


def dashboard_figures(client: httpx.Client, query: str = "") -> dict[str, int]:
    """The dashboard's counts and money (minor units) as shown, by their data names."""
    page = html(client.get("/" + query))
    figures = {n["data-count"]: int(n.get_text()) for n in page.select("[data-count]")}
    figures.update(
        {n["data-money"]: minor_units(n.get_text()) for n in page.select("[data-money]")}
    )
    assert figures, "no figures on the dashboard"
    return figures


def listed_complaints(owner: httpx.Client, office: str) -> dict[str, str]:
    """Complaint number -> "unread" or "" on the owner's complaints page of one office."""
    page = html(owner.get("/complaints", params={"office": office}))
    return {r["data-number"]: " ".join(r.get("class", [])) for r in page.select("tr[data-number]")}


def listed_overpayments(owner: httpx.Client) -> dict[str, int]:
    """Customer id -> excess (minor units) of the open flags on the Overpayments page."""
    page = html(owner.get("/sync/overpayments"))
    return {
        row.select_one("a[href^='/customers/']")["href"].rsplit("/", 1)[-1]: minor_units(
            row.select_one("[data-money=excess]").get_text()
        )
        for row in page.select("table#overpayments tbody tr")
    }


def open_conflicts(owner: httpx.Client) -> list[dict[str, str]]:
    page = html(owner.get("/sync/conflicts"))
    return [
        {
            "field": row["data-field"],
            "winner": row.select_one(".winner .value").get_text(),
            "loser": row.select_one(".loser .value").get_text(),
            "customer": row.select_one(".customer").get_text(" ", strip=True),
        }
        for row in page.select("table#conflicts tbody tr")
    ]


# -- the story --------------------------------------------------------------------------------


def test_two_offices_work_offline_reconnect_and_the_owner_sees_it_all(central, offices):
    owner, aa, bb, aa2 = offices

    # Online first: each office sets up its plan, AA registers Ana, and every box syncs.
    for office in (aa, bb):
        admin_creates_plan(office)
    ana = admin_registers_customer(aa, "Ana Souza")
    counter_takes_payment(aa, "Ana Souza", "40.00")
    for office in (aa, bb, aa2):
        assert sync_once(office)["dead_letters"] == 0

    # Offline for a while: counters register customers and take payments at both offices.
    for n in range(AA_CUSTOMERS):
        admin_registers_customer(aa, f"AA Customer {n}")
        counter_takes_payment(aa, f"AA Customer {n}", "100.00")
    for n in range(BB_CUSTOMERS):
        admin_registers_customer(bb, f"BB Customer {n}")
        counter_takes_payment(bb, f"BB Customer {n}", "100.00" if n else "30.00")
    complaint = agent_raises_complaint_for(bb, "BB Customer 1", "No signal since the storm")
    # Ana pays the rest of her 100.00 at AA, and again at AA's other counter: 60.00 too much.
    counter_takes_payment(aa, "Ana Souza", "60.00")
    assert counter_finds_customer(aa2, "Ana Souza") == ana
    counter_takes_payment(aa2, "Ana Souza", "60.00")

    # Ana's name is corrected at AA and, meanwhile, differently by the owner at central; each
    # also changes a field the other leaves alone.
    admin_edits_customer(aa, "Ana Souza", name="Ana Souza Lima", area="Vila Nova")
    owner_edits_customer_page(owner, ana, name="Ana Lima Souza", house="77")

    # Reconnected: BB and AA2 sync; AA's round dies by SIGKILL after its first batch, then
    # resumes; AA2 syncs again for what AA brought.
    for office in (bb, aa2):
        assert sync_once(office)["dead_letters"] == 0
    sent, total = sync_killed_after_first_batch(aa, batch=5)
    assert 0 < sent < total, f"AA's round was not cut in the middle ({sent} of {total} sent)"
    resumed = sync_once(aa, "--batch", "5")
    assert resumed["dead_letters"] == 0
    assert sent_changes(aa)[0] == sent_changes(aa)[1]
    assert sync_once(aa2)["dead_letters"] == 0

    # Each box ends identical to central for its office, field by field.
    run(assert_converged(central, aa.node, bb.node, aa2.node))

    # The owner's All payments page: every payment exactly once, with the office that took it.
    listed = listed_payments(owner)
    numbers = [number for number, _office in listed]
    assert len(numbers) == len(set(numbers)), "a payment is listed twice"
    taken = [(number, o.code) for o in (aa, bb, aa2) for number in o.payments]
    assert sorted(listed) == sorted(taken)

    # Every customer's due and credit at central are the box's; Ana's 60.00 too much is kept
    # as credit and flagged for the owner.
    owner_api = api_client(central.server, OWNER)
    with closing(owner_api):
        for office in (aa, bb, aa2):
            for name, customer_id in office.customers.items():
                assert due_and_credit(owner_api, customer_id) == due_and_credit(
                    office.api, customer_id
                ), f"{name} at {office.node.name}"
        assert due_and_credit(owner_api, ana) == (0, 60_00)
        assert due_and_credit(owner_api, bb.customers["BB Customer 0"]) == (70_00, 0)
    assert listed_overpayments(owner) == {ana: 60_00}

    # The rename conflict is listed for review; the fields only one side changed both stayed.
    conflicts = open_conflicts(owner)
    assert [c["field"] for c in conflicts] == ["name"]
    assert {conflicts[0]["winner"], conflicts[0]["loser"]} == {"Ana Souza Lima", "Ana Lima Souza"}
    assert "AA" in conflicts[0]["customer"]
    ana_at_central = html(owner.get(f"/customers/{ana}/edit"))
    kept = form_values(ana_at_central, f"/customers/{ana}")
    assert (kept["name"], kept["area"], kept["house"]) == (
        conflicts[0]["winner"],
        "Vila Nova",
        "77",
    )

    # The complaint is among BB's at central, unread, and not among AA's.
    assert listed_complaints(owner, "BB") == {complaint: "unread"}
    assert listed_complaints(owner, "AA") == {}

    # Dashboards: central filtered by office shows what each box of that office shows, and
    # "all offices" is their sum.
    per_office = {}
    for office in (aa, bb, aa2):
        code = office.code
        with closing(browser(office.server, ADMIN)) as admin:
            at_the_box = dashboard_figures(admin)
        per_office[code] = dashboard_figures(owner, f"?office={code}")
        assert per_office[code] == at_the_box, office.node.name
    assert per_office["AA"]["cable-active"] == AA_CUSTOMERS + 1
    assert per_office["BB"]["unread-complaints"] == 1
    assert per_office["AA"]["cable-received"] == 100_00 * (AA_CUSTOMERS + 1) + 60_00
    everything = dashboard_figures(owner)
    assert everything == {k: per_office["AA"][k] + per_office["BB"][k] for k in everything}
