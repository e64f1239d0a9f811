"""createReport's office filter: at central a report may be limited to one office (an unknown
office is refused at the field); a box, which holds its own office only, refuses the filter."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import uuid
from collections.abc import Iterator

import openpyxl
import pytest
from litestar.testing import TestClient

from appliance import clock, db
from appliance.customers.tables import Customer
from appliance.jobs.queue import configure_queue
from appliance.sync import central
from appliance.web.app import create_app
from tests.conftest import _pg_admin, make_settings, pg_url_for, run
from tests.helpers import STAFF_PASSWORD, make_plan, make_staff
from tests.reports.conftest import TODAY, move_clock_to
from tests.reports.ledger import charge, customer_with, pay

BODY = {"service": "cable", "year": 2026, "month": 10, "classification": "paid"}
XLSX = {**BODY, "file_type": "xlsx"}


def _token(client: TestClient, role: str = "admin") -> dict[str, str]:
    staff = run(make_staff(role))
    token = client.post(
        "/api/v1/auth/token", json={"username": staff["username"], "password": STAFF_PASSWORD}
    ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def central_client(tmp_path, pg_template) -> Iterator[TestClient]:
    """The API of a central instance (PostgreSQL) with offices NO and SU, one customer each
    whose October 2026 cable is paid."""
    name = f"ctvms_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    settings = make_settings(
        tmp_path, database_url=pg_url_for(name), role="central", office_code="HQ"
    )
    db.configure(settings)
    configure_queue(settings, immediate=True)
    clock.reset()
    move_clock_to(TODAY)
    run(_two_offices(settings))
    try:
        with TestClient(create_app(settings, queue=False), base_url="http://127.0.0.1") as c:
            yield c
    finally:
        clock.reset()
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _two_offices(settings) -> None:
    plan = await make_plan(service="cable", monthly_price="49.90")
    for code, person in (("NO", "North Paid"), ("SU", "South Paid")):
        await central.create_office(code, f"Office {code}")
        customer = await customer_with(settings, plans={"cable": plan}, name=person)
        await Customer.raw("UPDATE customers SET office = {} WHERE id = {}", code, customer["id"])
        october = await charge(customer, "cable", 2026, 10, 4990)
        await pay(customer, [(october, 4990)], paid_on=dt.date(2026, 10, 5))


def _names_in(client: TestClient, job: dict, auth: dict[str, str]) -> set[str]:
    assert job["status"] == "done", job
    file = client.get(job["file_url"], headers=auth)
    sheet = openpyxl.load_workbook(io.BytesIO(file.content), read_only=True).active
    cells = {c for row in sheet.iter_rows(values_only=True) for c in row}
    return cells & {"North Paid", "South Paid"}


def test_central_limits_a_report_to_the_office_asked_for(central_client):
    auth = _token(central_client)
    every = central_client.post("/api/v1/reports", json=XLSX, headers=auth)
    assert every.status_code == 201, every.text
    assert every.json()["office"] == ""
    assert _names_in(central_client, every.json(), auth) == {"North Paid", "South Paid"}

    south = central_client.post("/api/v1/reports", json={**XLSX, "office": "su"}, headers=auth)
    assert south.status_code == 201, south.text
    assert south.json()["office"] == "SU" and south.json()["rows_total"] == 1
    assert _names_in(central_client, south.json(), auth) == {"South Paid"}
    again = central_client.get(f"/api/v1/reports/{south.json()['id']}", headers=auth)
    assert again.json()["office"] == "SU"

    unknown = central_client.post("/api/v1/reports", json={**XLSX, "office": "XX"}, headers=auth)
    assert unknown.status_code == 422
    assert "office" in unknown.json()["errors"]


def test_a_box_refuses_the_office_filter_with_the_reason(client, settings, office):
    auth = _token(client)
    refused = client.post("/api/v1/reports", json={**XLSX, "office": "TS"}, headers=auth)
    assert refused.status_code == 422
    assert "central" in refused.json()["errors"]["office"]
    # Without it the box reports its own office as before.
    plain = client.post("/api/v1/reports", json={**XLSX, "office": ""}, headers=auth)
    assert plain.status_code == 201 and plain.json()["office"] == ""
