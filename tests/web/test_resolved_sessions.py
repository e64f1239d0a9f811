"""Sessions resolved lately are taken from memory (appliance/web/auth.py), and every answer is
still the one the database gives: logouts, revocations, deactivated logins and expiry count at
once, with the session's "last seen" kept up to date."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance import clock
from appliance.accounts import service as accounts
from appliance.accounts.tables import Session
from appliance.customers import service as customers
from tests.conftest import USE_PG, run
from tests.helpers import (
    STAFF_PASSWORD,
    SYSTEM,
    customer_password,
    login,
    make_customer,
    make_staff,
    post_form,
)

SESSION = "ctvms_session"


def logged_in(client, path: str = "/plans") -> bool:
    response = client.get(path, follow_redirects=False)
    assert response.status_code in (200, 303), response.status_code
    return response.status_code == 200


def warm(client, path: str = "/plans") -> None:
    """A few pages, so the session is one this process resolved lately."""
    for _ in range(3):
        assert logged_in(client, path)


def test_a_password_change_logs_out_a_device_that_was_just_using_the_session(
    client, client2, settings
):
    run(make_staff("admin", "ana"))
    login(client, "ana")
    login(client2, "ana")
    warm(client2)
    response = post_form(
        client,
        "/account/password",
        {"current": STAFF_PASSWORD, "new": "new-secret-123", "confirm": "new-secret-123"},
    )
    assert response.status_code == 200
    assert not logged_in(client2)
    assert logged_in(client)


def test_a_copy_of_a_cookie_in_use_is_worthless_right_after_logout(client, client2, settings):
    run(make_staff("admin", "ana"))
    login(client, "ana")
    client2.cookies.set(SESSION, client.cookies.get(SESSION))
    warm(client2)
    post_form(client, "/logout", {}, page="/plans", follow_redirects=False)
    assert not logged_in(client2)


def test_an_archived_customer_is_logged_out_at_the_next_page(client, settings):
    customer = run(make_customer(settings))
    login(client, customer["crf"], run(customer_password(customer["id"])))
    warm(client, "/portal")
    run(customers.archive_customer(customer["id"], actor=SYSTEM))
    assert not logged_in(client, "/portal")


def test_an_api_token_ends_at_its_lifetime_even_while_in_use(client, settings):
    run(make_staff("admin", "ana"))
    token = client.post(
        "/api/v1/auth/token", json={"username": "ana", "password": STAFF_PASSWORD}
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    clock.shift(accounts.API_TOKEN_LIFETIME - dt.timedelta(seconds=1))
    for _ in range(3):
        assert client.get("/api/v1/plans", headers=auth).status_code == 200
    clock.shift(dt.timedelta(seconds=2))  # past its end, a moment after it was last resolved
    assert client.get("/api/v1/plans", headers=auth).status_code == 401


@pytest.mark.skipif(USE_PG, reason="sessions are kept in memory on SQLite only")
def test_a_session_in_steady_use_is_still_touched(client, settings):
    run(make_staff("admin", "ana"))
    login(client, "ana")
    started = clock.now()
    # Pages every few seconds for over a minute, nothing else written meanwhile.
    for _ in range(20):
        clock.shift(dt.timedelta(seconds=4))
        assert logged_in(client)
    rows = run(Session.select(Session.last_seen_at))
    assert rows and rows[0]["last_seen_at"] >= started + accounts.TOUCH_EVERY
