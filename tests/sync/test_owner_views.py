"""The owner's pages at central (PostgreSQL, in-process app on the database a real ``ctvms serve``
process serves to the boxes): offices and enrollment codes, revoking a box, the conflict
review with "reverse", dead letters, overpayment flags, and the consolidated views filtered by
office."""

from __future__ import annotations

import io
import secrets
import shlex
import uuid
from collections.abc import Iterator

import openpyxl
import pytest
from litestar.testing import TestClient

from appliance import clock
from appliance.cli import parser as cli_parser
from appliance.complaints import service as complaints
from appliance.customers.tables import Customer
from appliance.sync import central as central_service
from appliance.sync import client as sync_client
from appliance.sync.tables import SyncBox, SyncDeadLetter, SyncOverpayment
from appliance.web.app import create_app
from tests.billing.conftest import pay, subscriber
from tests.conftest import run
from tests.helpers import SYSTEM, field_error, html, login, make_customer, make_plan, make_staff
from tests.helpers import post_form as post
from tests.sync.conftest import enroll_box


@pytest.fixture
def owner(central) -> Iterator[TestClient]:
    """The owner signed in at central."""
    run(central.use())
    app = create_app(central.settings, queue=False)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        login(c, run(make_staff("owner"))["username"])
        yield c


def at_central(central, client: TestClient) -> TestClient:
    """Point this process's tables back at central after working on a box."""
    run(central.use())
    return client


async def _name(customer_id) -> str:
    rows = await Customer.select(Customer.name).where(Customer.id == customer_id)
    return rows[0]["name"]


async def _rename(customer_id, name: str) -> None:
    await Customer.update({Customer.name: name}).where(Customer.id == customer_id)


def test_a_new_office_gets_a_code_shown_once_that_enrolls_a_box(owner, central, make_box):
    response = post(owner, "/sync/offices", {"code": "ab", "name": "Abrolhos"})
    assert response.status_code == 200
    code = html(response).select_one("#enroll-code [data-code]")["data-code"]
    assert code and "ctvms sync enroll" in html(response).find(id="enroll-code").get_text()
    # Shown once: the office list keeps only its hash.
    listing = owner.get("/sync/offices")
    assert code not in listing.text
    assert html(listing).select_one("[data-office=AB]")

    again = post(owner, "/sync/offices", {"code": "AB", "name": "Other"}, page="/sync/offices")
    assert again.status_code == 422
    assert "already" in field_error(html(again), "code")

    box = run(make_box(central, "AB", enroll=False))
    enrolled = run(enroll_box(box, central, code))
    at_central(central, owner)
    rows = html(owner.get("/sync/offices")).select("[data-office=AB] tr[data-node]")
    assert [r["data-node"] for r in rows] == [enrolled["node_id"]]
    # The code was for one box only.
    other = run(make_box(central, "AB", enroll=False))
    with pytest.raises(sync_client.SyncError):
        run(enroll_box(other, central, code))

    # A new code enrolls the next box.
    at_central(central, owner)
    fresh = post(owner, "/sync/offices/AB/code", {}, page="/sync/offices")
    second = html(fresh).select_one("#enroll-code [data-code]")["data-code"]
    assert second != code
    assert run(enroll_box(other, central, second))["office_code"] == "AB"


def test_the_enrollment_command_shown_works_for_a_code_beginning_with_a_dash(owner, monkeypatch):
    """One code in 64 begins with "-", which ``--code -x…`` would take for an option: the page
    writes ``--code=CODE``, which the command line parses."""
    original = secrets.token_urlsafe
    monkeypatch.setattr(secrets, "token_urlsafe", lambda n=None: "-" + original(n))
    page = html(post(owner, "/sync/offices", {"code": "DS", "name": "Dash"}))
    code = page.select_one("#enroll-code [data-code]")["data-code"]
    assert code.startswith("-")
    command = shlex.split(page.select_one("#enroll-code .enroll-command").get_text())
    assert command[:3] == ["ctvms", "sync", "enroll"]
    args = cli_parser().parse_args(command[1:])
    assert (args.code, args.central) == (code, "http://127.0.0.1")


def test_a_revoked_box_is_refused_at_its_next_push(owner, central, make_box):
    box = run(make_box(central, "RV"))
    run(make_customer(box.settings, name="Before Revoke"))
    run(box.sync())
    run(make_customer(box.settings, name="After Revoke"))

    at_central(central, owner)
    link = html(owner.get("/sync/offices")).select_one("[data-office=RV] a.revoke")
    confirm = html(owner.get(link["href"]))
    form = confirm.find("form", id="revoke")
    assert "cannot be undone" in confirm.get_text()
    response = post(owner, form["action"], {}, page=link["href"], follow_redirects=False)
    assert response.status_code == 303
    row = html(owner.get("/sync/offices")).select_one("[data-office=RV] tr[data-node]")
    assert row["data-revoked"] == "1"

    with pytest.raises(sync_client.SyncError, match="revoked"):
        run(box.sync())
    run(central.use())
    names = {r["name"] for r in run(Customer.select(Customer.name))}
    assert "Before Revoke" in names and "After Revoke" not in names


def test_a_conflict_of_two_boxes_is_reviewed_and_reversed_down_to_the_boxes(
    owner, central, make_box
):
    a = run(make_box(central, "CF"))
    customer = run(make_customer(a.settings, name="Original Name"))
    run(a.sync())
    b = run(make_box(central, "CF", enroll=False))
    run(central.use())
    run(enroll_box(b, central, run(central_service.new_enroll_code("CF"))))
    run(b.sync())
    run(central.new_office("ZZ"))

    # Both boxes rename the customer while apart, then sync.
    run(a.use())
    run(_rename(customer["id"], "Name From A"))
    run(b.use())
    run(_rename(customer["id"], "Name From B"))
    run(a.sync())
    run(b.sync())

    at_central(central, owner)
    page = html(owner.get("/sync/conflicts"))
    rows = page.select("table#conflicts tbody tr[data-field=name]")
    assert len(rows) == 1
    row = rows[0]
    winner = row.select_one(".winner .value").get_text()
    loser = row.select_one(".loser .value").get_text()
    assert {winner, loser} == {"Name From A", "Name From B"}
    assert run(_name(customer["id"])) == winner
    assert winner in row.select_one(".customer").get_text()
    assert "CF" in row.select_one(".loser").get_text()
    assert page.select_one("[data-count=conflicts]").get_text() == "(1)"
    # The office filter: CF shows it, another office does not.
    assert html(owner.get("/sync/conflicts?office=CF")).select("table#conflicts tbody tr")
    assert not html(owner.get("/sync/conflicts?office=ZZ")).select("table#conflicts tbody tr")

    reverse = row.find("form", action=lambda a: a and a.endswith("/reverse"))
    response = post(owner, reverse["action"], {}, page="/sync/conflicts", follow_redirects=False)
    assert response.status_code == 303
    assert run(_name(customer["id"])) == loser
    assert not html(owner.get("/sync/conflicts")).select("table#conflicts tbody tr")
    done = html(owner.get("/sync/conflicts?reviewed=1")).select_one("table#conflicts tbody tr")
    assert "Reversed" in done.get_text()
    # Reversing twice is refused.
    again = post(owner, reverse["action"], {}, page="/sync/conflicts")
    assert again.status_code == 409

    # The boxes get the owner's choice at their next round.
    for box in (a, b):
        run(box.sync())
        run(box.use())
        assert run(_name(customer["id"])) == loser


def test_dead_letters_and_overpayments_are_listed_and_marked(owner, central):
    customer = run(make_customer(central.settings, name="Paid Twice"))
    run(
        SyncDeadLetter.insert(
            SyncDeadLetter(
                change_id=uuid.uuid4(),
                node_id=uuid.uuid4(),
                office_code="DL",
                table_name="customers",
                change="{}",
                reason="an update of a row this node does not have",
            )
        )
    )
    run(SyncOverpayment.insert(SyncOverpayment(customer=customer["id"], excess=5000)))

    page = html(owner.get("/sync/dead-letters"))
    row = page.select_one("table#dead-letters tbody tr")
    assert "does not have" in row.select_one(".reason").get_text()
    form = row.find("form")
    post(owner, form["action"], {}, page="/sync/dead-letters")
    assert not html(owner.get("/sync/dead-letters")).select("table#dead-letters tbody tr")
    resolved = html(owner.get("/sync/dead-letters?resolved=1"))
    assert resolved.select("table#dead-letters tbody tr")

    page = html(owner.get("/sync/overpayments"))
    row = page.select_one("table#overpayments tbody tr")
    assert "Paid Twice" in row.get_text()
    assert "50" in row.select_one("[data-money=excess]").get_text()
    post(owner, row.find("form")["action"], {}, page="/sync/overpayments")
    assert not html(owner.get("/sync/overpayments")).select("table#overpayments tbody tr")
    assert run(SyncOverpayment.count().where(SyncOverpayment.reviewed_at.is_not_null())) == 1

    # The keep action marks a conflict reviewed without touching the record.
    from appliance.sync.tables import SyncConflict

    run(
        SyncConflict.insert(
            SyncConflict(
                table_name="customers",
                row_id=customer["id"],
                field="name",
                winner_value='"Paid Twice"',
                winner_hlc=2 << 16,
                winner_node=uuid.uuid4(),
                loser_value='"Paid Once"',
                loser_hlc=1 << 16,
                loser_node=uuid.uuid4(),
            )
        )
    )
    row = html(owner.get("/sync/conflicts")).select_one("table#conflicts tbody tr")
    keep = row.find("form", action=lambda a: a and a.endswith("/keep"))
    post(owner, keep["action"], {}, page="/sync/conflicts")
    assert run(_name(customer["id"])) == "Paid Twice"
    assert not html(owner.get("/sync/conflicts")).select("table#conflicts tbody tr")

    # A field agent at central reaches none of it.
    owner.cookies.clear()
    login(owner, run(make_staff("agent"))["username"])
    for path in ("/sync/offices", "/sync/conflicts", "/sync/dead-letters", "/payments", "/sync"):
        assert owner.get(path).status_code == 403, path
    # With a valid CSRF token (from a page agents may open): refused for the role.
    assert post(owner, keep["action"], {}, page="/customers").status_code == 403


def _office_data(box, name: str) -> dict:
    async def build():
        await box.use()
        plans = {"cable": await make_plan(service="cable", monthly_price="100.00")}
        customer = await subscriber(box.settings, plans, cable="2026-12-01", name=name)
        await pay(box.settings, customer, "100.00")
        await complaints.raise_complaint(
            customer["id"],
            category="no_signal",
            message=f"No signal at {name}",
            actor=SYSTEM,
            settings=box.settings,
        )
        return customer

    return run(build())


def _report_names(response) -> set[str]:
    assert response.status_code == 200, response.text[:300]
    sheet = openpyxl.load_workbook(io.BytesIO(response.content), read_only=True).active
    return {c for row in sheet.iter_rows(values_only=True) for c in row if c in NAMES}


NAMES = {"North Customer", "South Customer"}


def test_consolidated_views_filter_by_office(owner, central, make_box):
    north, south = run(make_box(central, "NO")), run(make_box(central, "SU"))
    _office_data(north, "North Customer")
    _office_data(south, "South Customer")
    run(north.sync())
    run(south.sync())
    at_central(central, owner)

    def dashboard(query: str) -> dict[str, str]:
        page = html(owner.get("/" + query))
        return {n["data-count"]: n.get_text() for n in page.select("strong[data-count]")}

    assert dashboard("")["cable-active"] == "2"
    only_north = dashboard("?office=NO")
    assert only_north["cable-active"] == "1"
    assert only_north["unread-complaints"] == "1"
    page = html(owner.get("/?office=NO"))
    assert page.select_one("#f-office option[selected]")["value"] == "NO"
    assert "100" in page.select_one("[data-money=cable-received]").get_text()

    def names(path: str) -> str:
        return html(owner.get(path)).select_one("table").get_text(" ")

    listed = names("/customers?office=SU")
    assert "South Customer" in listed and "North Customer" not in listed
    assert "North Customer" in names("/customers")
    listed = names("/payments?office=NO")
    assert "North Customer" in listed and "South Customer" not in listed
    rows = html(owner.get("/payments")).select("table#payments tbody tr")
    assert {r["data-office"] for r in rows} == {"NO", "SU"}
    listed = names("/complaints?office=SU")
    assert "South Customer" in listed and "North Customer" not in listed

    # The payment report, limited to one office.
    today = clock.today(central.settings.tz)
    report = {
        "service": "both",
        "year": str(today.year),
        "month": str(today.month),
        "classification": "paid",
        "file_type": "xlsx",
    }
    form = html(owner.get("/reports"))
    assert {o["value"] for o in form.select("#f-office option")} == {"", "NO", "SU"}
    assert _report_names(post(owner, "/reports", report, page="/reports")) == {
        "North Customer",
        "South Customer",
    }
    only = post(owner, "/reports", {**report, "office": "SU"}, page="/reports")
    assert only.headers["content-disposition"].count("SU-paid-both")
    assert _report_names(only) == {"South Customer"}
    wrong = post(owner, "/reports", {**report, "office": "XX"}, page="/reports")
    assert wrong.status_code == 422 and field_error(html(wrong), "office")

    # A customer created at central must be given an office, and only that office gets it.
    form = html(owner.get("/customers/new"))
    assert {o["value"] for o in form.select("#f-office option")} == {"", "NO", "SU"}
    data = {"name": "Central Made", "mobile": "11955554444", "house": "7", "area": "Centro"}
    refused = post(owner, "/customers", data, page="/customers/new")
    assert refused.status_code == 422
    assert field_error(html(refused), "office")
    made = post(owner, "/customers", {**data, "office": "SU"}, page="/customers/new")
    assert made.status_code == 200, made.text
    office = run(Customer.raw("SELECT office FROM customers WHERE name = 'Central Made'"))
    assert office[0]["office"] == "SU"
    for box, expected in ((south, 1), (north, 0)):
        run(box.sync())
        run(box.use())
        assert run(Customer.count().where(Customer.name == "Central Made")) == expected
    run(central.use())
    assert run(SyncBox.count()) == 2
