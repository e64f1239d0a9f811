"""Log in and out through the pages: cookies, session fixation, expiry, lockout and unlock,
the forced password change, staff management."""

from __future__ import annotations

import datetime as dt

from appliance import clock
from appliance.accounts import service as accounts
from appliance.accounts.tables import User
from tests.conftest import run
from tests.helpers import (
    STAFF_PASSWORD,
    csrf_token,
    customer_password,
    field_error,
    html,
    login,
    make_customer,
    make_staff,
    post_form,
)
from tests.web.routes import routes

SESSION = "ctvms_session"


def _set_cookie(response, name: str) -> str:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(name + "="):
            return header
    raise AssertionError(f"no {name} cookie set")


def test_login_page_has_labelled_fields_and_a_csrf_token(client):
    page = html(client.get("/login"))
    form = page.find("form", attrs={"action": "/login"})
    for name in ("login", "password"):
        field = form.find("input", attrs={"name": name})
        assert page.find("label", attrs={"for": field["id"]})
    assert form.find("input", attrs={"name": "_csrf_token"})["value"]
    assert form.find("input", attrs={"name": "password"})["type"] == "password"


def test_staff_login_sets_a_httponly_samesite_session_cookie(client, settings):
    run(make_staff("admin", "ana"))
    response = login(client, "ana")
    assert response.headers["location"] == "/"
    cookie = _set_cookie(response, SESSION).lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "path=/" in cookie
    assert "secure" not in cookie  # plain HTTP on the LAN unless CTVMS_SECURE_COOKIES is on
    page = html(client.get("/"))
    assert page.find("h1").get_text(strip=True).startswith("Dashboard")


def test_secure_cookies_setting_marks_the_session_cookie_secure(settings):
    from dataclasses import replace

    from litestar.testing import TestClient

    from appliance.web.app import create_app

    run(make_staff("admin", "ana"))
    app = create_app(replace(settings, secure_cookies=True), queue=False)
    with TestClient(app, base_url="https://127.0.0.1") as client:
        response = login(client, "ana")
        assert "secure" in _set_cookie(response, SESSION).lower()


def test_agents_and_customers_land_on_their_own_start_page(client, client2, settings):
    run(make_staff("agent", "beto"))
    assert login(client, "beto").headers["location"] == "/customers"
    customer = run(make_customer(settings))
    password = run(customer_password(customer["id"]))
    assert login(client2, customer["crf"], password).headers["location"] == "/portal"


def test_wrong_password_re_renders_the_form_keeping_the_login(client, settings):
    run(make_staff("admin", "ana"))
    response = post_form(client, "/login", {"login": "ana", "password": "nope-nope-nope"})
    assert response.status_code == 401
    page = html(response)
    assert page.find(attrs={"role": "alert"}).get_text(strip=True) == "Wrong login or password."
    assert page.find("input", attrs={"name": "login"})["value"] == "ana"
    assert not page.find("input", attrs={"name": "password"}).get("value")
    assert SESSION not in response.cookies


def test_next_parameter_is_followed_only_to_local_paths(client, settings):
    run(make_staff("admin", "ana"))
    redirect = client.get("/plans", follow_redirects=False)
    assert redirect.status_code == 303
    assert redirect.headers["location"] == "/login?next=/plans"
    page = html(client.get(redirect.headers["location"]))
    assert page.find("input", attrs={"name": "next"})["value"] == "/plans"
    ok = post_form(client, "/login", {"login": "ana", "password": STAFF_PASSWORD, "next": "/plans"})
    assert ok.url.path == "/plans"
    client.cookies.clear()
    evil = post_form(
        client,
        "/login",
        {"login": "ana", "password": STAFF_PASSWORD, "next": "//evil.example/x"},
        follow_redirects=False,
    )
    assert evil.headers["location"] == "/"


def test_a_session_planted_before_login_is_not_the_session_after_it(client, client2, settings):
    """Session fixation: an attacker's own valid session id, planted in the victim's browser,
    must neither become the victim's session nor stay usable."""
    run(make_staff("admin", "victim"))
    run(make_staff("agent", "attacker"))
    attacker_cookie = _set_cookie(login(client2, "attacker"), SESSION)
    planted = attacker_cookie.split(";")[0].split("=", 1)[1]

    client.cookies.set(SESSION, planted)
    response = login(client, "victim")
    fresh = _set_cookie(response, SESSION).split(";")[0].split("=", 1)[1]
    assert fresh and fresh != planted
    me = html(client.get("/")).find(class_="who").get_text()
    assert "victim" in me
    # The planted id was ended at login: it no longer opens anything.
    client2.cookies.set(SESSION, planted)
    assert client2.get("/customers", follow_redirects=False).status_code == 303


def test_an_unknown_session_cookie_is_treated_as_logged_out(client, settings):
    client.cookies.set(SESSION, "made-up-value")
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


def test_logout_ends_the_session_on_the_server(client, client2, settings):
    run(make_staff("admin", "ana"))
    token = _set_cookie(login(client, "ana"), SESSION).split(";")[0].split("=", 1)[1]
    response = post_form(client, "/logout", {}, page="/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    # Even a copy of the cookie kept elsewhere is worthless now.
    client2.cookies.set(SESSION, token)
    assert client2.get("/", follow_redirects=False).headers["location"].startswith("/login")


def test_idle_session_expires_and_activity_keeps_it(client, settings):
    run(make_staff("admin", "ana"))
    login(client, "ana")
    for _ in range(3):
        clock.shift(dt.timedelta(minutes=settings.session_idle_minutes - 5))
        assert client.get("/plans").status_code == 200
    clock.shift(dt.timedelta(minutes=settings.session_idle_minutes + 1))
    response = client.get("/plans", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/plans"


def test_session_ends_at_max_age_even_when_active(client, settings):
    run(make_staff("admin", "ana"))
    login(client, "ana")
    step = dt.timedelta(minutes=settings.session_idle_minutes - 5)
    elapsed = dt.timedelta(0)
    while elapsed + step < dt.timedelta(hours=settings.session_max_hours):
        clock.shift(step)
        elapsed += step
        assert client.get("/plans", follow_redirects=False).status_code == 200
    clock.shift(step)
    assert client.get("/plans", follow_redirects=False).status_code == 303


def test_forced_password_change_blocks_every_other_page_and_api_call(client, app, settings):
    username, password = run(accounts.ensure_first_admin())
    login(client, username, password)
    token = client.post(
        "/api/v1/auth/token", json={"username": username, "password": password}
    ).json()["access_token"]
    csrf = csrf_token(client, "/account/password")
    checked = 0
    for route in routes(app):
        if route.opt.get("public") or route.opt.get("allow_password_change"):
            continue
        if route.is_api:
            response = client.request(
                route.method, route.path, headers={"Authorization": f"Bearer {token}"}, json={}
            )
            assert response.status_code == 403, route
            assert response.json()["error"] == "password_change_required", route
        else:
            response = client.request(
                route.method,
                route.path,
                headers={"x-csrftoken": csrf},
                follow_redirects=False,
            )
            assert response.status_code == 303, route
            assert response.headers["location"] == "/account/password", route
        checked += 1
    assert checked >= 20
    page = html(client.get("/account/password"))
    assert "temporary password" in page.find(attrs={"role": "status"}).get_text()
    # The main menu is hidden until the password is changed.
    assert not page.find("a", attrs={"href": "/customers"})

    response = post_form(
        client,
        "/account/password",
        {"current": password, "new": "my-own-pass-99", "confirm": "my-own-pass-99"},
    )
    assert response.status_code == 200
    assert client.get("/customers").status_code == 200


def test_password_change_page_shows_errors_at_the_fields(client, settings):
    run(make_staff("admin", "ana"))
    login(client, "ana")
    response = post_form(
        client,
        "/account/password",
        {"current": "wrong", "new": "short", "confirm": "short"},
    )
    assert response.status_code == 422
    page = html(response)
    assert field_error(page, "current") == "This is not your current password."
    assert field_error(page, "new")
    new_input = page.find("input", attrs={"name": "new"})
    assert new_input["aria-describedby"] == "e-new" and new_input["aria-invalid"] == "true"


def test_password_change_logs_out_other_devices_but_not_this_one(client, client2, settings):
    run(make_staff("admin", "ana"))
    login(client, "ana")
    login(client2, "ana")
    response = post_form(
        client,
        "/account/password",
        {"current": STAFF_PASSWORD, "new": "new-secret-123", "confirm": "new-secret-123"},
    )
    assert response.status_code == 200
    assert "Other devices were logged out" in response.text
    assert client.get("/plans", follow_redirects=False).status_code == 200
    assert client2.get("/plans", follow_redirects=False).status_code == 303


def test_lockout_through_the_login_page_and_unlock_by_an_admin(client, client2, settings):
    run(make_staff("admin", "boss"))
    agent = run(make_staff("agent", "carla"))
    for _ in range(accounts.MAX_FAILED_LOGINS):
        r = post_form(client, "/login", {"login": "carla", "password": "wrong-guess-1"})
        assert r.status_code == 401
    r = post_form(client, "/login", {"login": "carla", "password": STAFF_PASSWORD})
    assert r.status_code == 429
    assert "locked" in html(r).find(attrs={"role": "alert"}).get_text()

    login(client2, "boss")
    staff_page = html(client2.get("/staff"))
    row = next(tr for tr in staff_page.select("tbody tr") if "carla" in tr.get_text())
    assert "Locked until" in row.get_text()
    action = row.find("form")["action"]
    assert action == f"/staff/{agent['id']}/unlock"
    assert post_form(client2, action, {}, page="/staff").status_code == 200
    login(client, "carla")


def test_admin_unlocks_a_customer_login_from_the_customer_page(client, client2, settings):
    run(make_staff("admin", "boss"))
    customer = run(make_customer(settings))
    password = run(customer_password(customer["id"]))
    for _ in range(accounts.MAX_FAILED_LOGINS):
        post_form(client, "/login", {"login": customer["crf"], "password": "wrong-guess-1"})
    login(client2, "boss")
    page = html(client2.get(f"/customers/{customer['id']}"))
    form = page.find("form", action=lambda a: a and a.endswith("/unlock"))
    assert form is not None
    post_form(client2, form["action"], {}, page=f"/customers/{customer['id']}")
    login(client, customer["crf"], password)


def test_too_many_failures_from_one_address_are_refused(client, settings):
    run(make_staff("admin", "ana"))
    for n in range(accounts.MAX_FAILURES_PER_ADDRESS):
        post_form(client, "/login", {"login": f"guess{n}", "password": "wrong-guess-1"})
    r = post_form(client, "/login", {"login": "ana", "password": STAFF_PASSWORD})
    assert r.status_code == 429
    assert "Too many failed logins" in r.text


def test_admin_adds_staff_who_must_change_the_password(client, client2, settings):
    run(make_staff("admin", "boss"))
    login(client, "boss")
    bad = post_form(client, "/staff", {"username": "x", "role": "agent", "password": "short"})
    assert bad.status_code == 422
    page = html(bad)
    assert field_error(page, "username") and field_error(page, "password")
    assert page.find("input", attrs={"name": "username"})["value"] == "x"
    # Only an owner may create an owner.
    r = post_form(
        client, "/staff", {"username": "newowner", "role": "owner", "password": "temp-pass-123"}
    )
    assert r.status_code == 422 and field_error(html(r), "role")
    r = post_form(
        client, "/staff", {"username": "dani", "role": "agent", "password": "temp-pass-123"}
    )
    assert r.status_code == 200
    assert "dani" in html(r).find("table").get_text()
    first = login(client2, "dani", "temp-pass-123")
    assert first.headers["location"] == "/account/password"
    row = run(User.select(User.role, User.must_change_password).where(User.username == "dani"))
    assert row == [{"role": "agent", "must_change_password": True}]


def test_owner_may_create_another_owner(client, settings):
    run(make_staff("owner", "dono"))
    login(client, "dono")
    r = post_form(
        client, "/staff", {"username": "socio", "role": "owner", "password": "temp-pass-123"}
    )
    assert r.status_code == 200
    assert run(User.select(User.role).where(User.username == "socio")) == [{"role": "owner"}]


def test_language_choice_is_remembered_in_a_cookie(client, settings):
    response = client.get("/lang/pt_BR?next=/login", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert html(client.get("/login")).find("html")["lang"] == "pt-BR"
    client.get("/lang/en?next=https://evil.example/")
    assert html(client.get("/login")).find("html")["lang"] == "en"
    # An unsupported code changes nothing.
    client.get("/lang/xx")
    assert html(client.get("/login")).find("html")["lang"] == "en"
