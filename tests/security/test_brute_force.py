"""Password guessing is limited whichever door it uses. tests/accounts proves the lockout
through the login page and tests/accounts/test_otp.py the limits on one-time codes; this adds
that the API's ``createToken`` shares the same counters, so guesses cannot move to the API."""

from __future__ import annotations

from appliance.accounts import service as accounts
from tests.helpers import post_form
from tests.security.world import CUSTOMER_PASSWORD, STAFF_PASSWORD


def _token(web, login: str, password: str):
    return web.post("/api/v1/auth/token", json={"username": login, "password": password})


def test_guesses_through_the_api_and_the_page_lock_the_same_account(world, web):
    login = world.a.login
    half = accounts.MAX_FAILED_LOGINS // 2
    for _ in range(half):
        assert _token(web, login, "guess-through-api-1").status_code == 401
    for _ in range(accounts.MAX_FAILED_LOGINS - half):
        page = post_form(web, "/login", {"login": login, "password": "guess-on-page-1"})
        assert page.status_code == 401
    # Locked now: the right password opens neither door.
    assert _token(web, login, CUSTOMER_PASSWORD).status_code == 429
    page = post_form(web, "/login", {"login": login, "password": CUSTOMER_PASSWORD})
    assert page.status_code == 429
    # The other customer is not affected.
    assert _token(web, world.b.login, CUSTOMER_PASSWORD).status_code == 201


def test_api_guesses_alone_lock_a_staff_account_and_answer_in_json(world, web):
    for _ in range(accounts.MAX_FAILED_LOGINS):
        answer = _token(web, "the-agent", "guess-through-api-2")
        assert answer.status_code == 401
        assert answer.json()["error"] and STAFF_PASSWORD not in answer.text
    locked = _token(web, "the-agent", STAFF_PASSWORD)
    assert locked.status_code == 429
    assert locked.json()["error"] == "rate_limited"
    assert "access_token" not in locked.text
