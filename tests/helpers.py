"""Builders for test rows and helpers for driving pages like a browser."""

from __future__ import annotations

import itertools
import re
from typing import Any

from bs4 import BeautifulSoup
from litestar.testing import TestClient

from appliance.accounts import service as accounts
from appliance.customers import service as customers
from appliance.plans import service as plans
from appliance.settings import Settings

STAFF_PASSWORD = "correct-horse-42"
_counter = itertools.count(1)


class System:
    """Stands in for the acting user in service calls made by fixtures."""

    id = None
    role = "admin"
    display_name = "test fixture"


SYSTEM = System()


async def make_plan(
    *,
    service: str = "cable",
    name: str | None = None,
    monthly_price: str = "100.00",
    description: str = "",
) -> dict[str, Any]:
    return await plans.create_plan(
        {
            "service": service,
            "name": name or f"{service} plan {next(_counter)}",
            "monthly_price": monthly_price,
            "description": description,
        },
        actor=SYSTEM,
    )


async def make_staff(
    role: str = "admin",
    username: str | None = None,
    password: str = STAFF_PASSWORD,
    *,
    must_change: bool = False,
):
    return await accounts.create_staff(
        username=username or f"{role}{next(_counter)}",
        role=role,
        password=password,
        must_change_password=must_change,
    )


async def make_customer(settings: Settings, **overrides: Any) -> dict[str, Any]:
    n = next(_counter)
    data: dict[str, Any] = {
        "name": f"Customer {n}",
        "mobile": f"5511{900000000 + n}",
        "email": "",
        "house": str(n),
        "area": "Centro",
    }
    data.update(overrides)
    return await customers.create_customer(
        data, actor=SYSTEM, settings=settings, confirm_duplicates=True
    )


async def customer_password(customer_id: Any, password: str = "customer-pass-77") -> str:
    """Give a customer a known, non-temporary password."""
    from appliance.accounts.tables import User

    rows = await User.select(User.id).where(User.customer == customer_id)
    await accounts.set_password(rows[0]["id"], password)
    return password


def html(response) -> BeautifulSoup:
    return BeautifulSoup(response.text, "html.parser")


def csrf_token(client: TestClient, path: str = "/login") -> str:
    page = html(client.get(path))
    field = page.find("input", attrs={"name": "_csrf_token"})
    if field is not None:
        return field["value"]
    body = page.find("body")
    return re.search(r'"x-csrftoken": "([^"]+)"', body["hx-headers"]).group(1)


def post_form(
    client: TestClient, path: str, data: dict[str, Any], *, page: str | None = None, **kwargs: Any
):
    """Submit a form the way a browser does: with the CSRF token of a page it loaded."""
    token = csrf_token(client, page or path)
    return client.post(path, data={**data, "_csrf_token": token}, **kwargs)


def login(client: TestClient, login_name: str, password: str = STAFF_PASSWORD):
    response = post_form(
        client, "/login", {"login": login_name, "password": password}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    return response


def field_error(page: BeautifulSoup, name: str) -> str | None:
    node = page.find(id=f"e-{name}")
    return node.get_text(strip=True) if node else None
