"""Guards that must hold on every route, including those features add later: CSRF on every
form, a role declaration on every route, each role kept to its own pages and API calls, and
a customer kept to their own record."""

from __future__ import annotations

import pytest

from tests.conftest import run
from tests.helpers import (
    csrf_token,
    customer_password,
    html,
    login,
    make_customer,
    make_staff,
)
from tests.web.routes import form_routes, routes


def test_every_route_declares_its_roles_or_is_public(app):
    undeclared = [r for r in routes(app) if not (r.opt.get("public") or r.opt.get("roles"))]
    assert not undeclared


def test_a_form_post_without_the_csrf_token_is_refused_on_every_form_route(client, app, settings):
    run(make_staff("admin", "ana"))
    login(client, "ana")
    checked = []
    for route in form_routes(app):
        response = client.request(route.method, route.path, data={}, follow_redirects=False)
        assert response.status_code == 403, route
        assert "This form has expired" in html(response).get_text(), route
        checked.append(route.template)
    assert {"/login", "/logout", "/customers", "/plans", "/account/password"} <= set(checked)


def test_a_csrf_token_from_the_page_is_accepted_in_the_form_or_the_htmx_header(client, settings):
    run(make_staff("admin", "ana"))
    login(client, "ana")
    token = csrf_token(client, "/plans/new")
    form = {"service": "cable", "name": "Básico", "monthly_price": "49.90"}
    ok = client.post("/plans", data={**form, "_csrf_token": token}, follow_redirects=False)
    assert ok.status_code == 303
    header = client.post(
        "/plans",
        data={**form, "name": "Família"},
        headers={"x-csrftoken": token},
        follow_redirects=False,
    )
    assert header.status_code == 303
    forged = client.post(
        "/plans", data={**form, "name": "Forjado", "_csrf_token": token[:-4] + "abcd"}
    )
    assert forged.status_code == 403


def test_a_post_from_a_browser_without_the_csrf_cookie_is_refused(client, client2, settings):
    """A token copied from one browser does not work in another (it is tied to a cookie)."""
    run(make_staff("admin", "ana"))
    token = csrf_token(client, "/login")
    response = client2.post("/login", data={"login": "ana", "password": "x", "_csrf_token": token})
    assert response.status_code == 403


def _as(role: str, client, settings) -> None:
    if role == "customer":
        customer = run(make_customer(settings))
        login(client, customer["crf"], run(customer_password(customer["id"])))
    else:
        run(make_staff(role, f"the-{role}"))
        login(client, f"the-{role}")


def _bearer(client, role: str, settings) -> dict[str, str]:
    if role == "customer":
        customer = run(make_customer(settings, email=f"api-{role}@example.com"))
        username, password = customer["crf"], run(customer_password(customer["id"]))
    else:
        username, password = f"api-{role}", "correct-horse-42"
        run(make_staff(role, username))
    token = client.post(
        "/api/v1/auth/token", json={"username": username, "password": password}
    ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("role", ["agent", "customer"])
def test_each_role_is_refused_every_route_not_meant_for_it(role, client, app, settings):
    _as(role, client, settings)
    csrf = csrf_token(client, "/account/password")
    headers = _bearer(client, role, settings)
    refused = []
    for route in routes(app):
        roles = route.opt.get("roles")
        if route.opt.get("public") or role in roles:
            continue
        if route.is_api:
            response = client.request(route.method, route.path, headers=headers, json={})
            assert response.status_code == 403, route
            assert response.json()["error"] == "forbidden", route
        else:
            response = client.request(
                route.method, route.path, headers={"x-csrftoken": csrf}, follow_redirects=False
            )
            assert response.status_code == 403, route
            assert "You are not allowed" in html(response).find("h1").get_text(), route
        refused.append((route.method, route.template))
    if role == "agent":
        # Field agents cannot add or edit customers or plans.
        for needed in [
            ("GET", "/customers/new"),
            ("POST", "/customers"),
            ("POST", "/customers/{customer_id:uuid}"),
            ("GET", "/customers/{customer_id:uuid}/edit"),
            ("POST", "/customers/{customer_id:uuid}/archive"),
            ("GET", "/plans"),
            ("POST", "/plans"),
            ("POST", "/plans/{plan_id:uuid}"),
            ("POST", "/api/v1/customers"),
            ("DELETE", "/api/v1/customers/{customer_id:uuid}"),
            ("POST", "/api/v1/plans"),
        ]:
            assert needed in refused
    else:
        for needed in [("GET", "/customers"), ("GET", "/staff"), ("GET", "/plans")]:
            assert needed in refused


def test_anonymous_visitors_are_sent_to_login_or_get_401_from_the_api(client, app, settings):
    csrf = csrf_token(client, "/login")
    for route in routes(app):
        if route.opt.get("public"):
            continue
        response = client.request(
            route.method, route.path, headers={"x-csrftoken": csrf}, follow_redirects=False
        )
        if route.is_api:
            assert response.status_code == 401, route
            assert response.json()["error"] == "not_authenticated", route
        else:
            assert response.status_code == 303, route
            assert response.headers["location"].startswith("/login?next="), route


def test_a_customer_cannot_read_or_change_another_customer(client, settings):
    a = run(make_customer(settings, name="Cliente A", email="a@example.com"))
    b = run(make_customer(settings, name="Cliente B", email="b@example.com"))
    password = run(customer_password(a["id"]))
    token = client.post(
        "/api/v1/auth/token", json={"username": a["crf"], "password": password}
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    own = client.get(f"/api/v1/customers/{a['id']}", headers=auth)
    assert own.status_code == 200 and own.json()["name"] == "Cliente A"
    other = client.get(f"/api/v1/customers/{b['id']}", headers=auth)
    assert other.status_code == 403 and "Cliente B" not in other.text
    change = client.patch(
        f"/api/v1/customers/{b['id']}", headers=auth, json={"mobile": "11988887777"}
    )
    assert change.status_code == 403
    assert client.get("/api/v1/customers", headers=auth).status_code == 403

    login(client, a["crf"], password)
    page = client.get(f"/customers/{b['id']}")
    assert page.status_code == 403 and "Cliente B" not in page.text
    portal = html(client.get("/portal")).get_text()
    assert "Cliente A" in portal and "Cliente B" not in portal
    profile = html(client.get("/portal/profile")).get_text()
    assert "Cliente A" in profile and b["crf"] not in profile


def test_pages_carry_security_headers_and_are_not_cached(client):
    response = client.get("/login")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    static = client.get("/static/app.css")
    assert static.status_code == 200 and "no-store" not in static.headers["cache-control"]
    assert "ctvms_session" not in static.headers.get("set-cookie", "")


def test_assets_are_served_locally_never_from_a_cdn(client):
    page = html(client.get("/login"))
    sources = [s["src"] for s in page.find_all("script", src=True)]
    sources += [link["href"] for link in page.find_all("link", href=True)]
    assert sources and all(s.startswith("/static/") for s in sources)
    for source in sources:
        assert client.get(source).status_code == 200
