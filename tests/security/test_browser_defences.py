"""What keeps a browser user safe on every route: CSRF on every form, a session id that changes
at login, cookie flags, redirects that stay on the box, and the security headers with a
Content-Security-Policy the pages actually live within (no inline script)."""

from __future__ import annotations

import dataclasses

import pytest
from litestar.testing import TestClient

from tests.conftest import run
from tests.helpers import csrf_token, html, login, post_form
from tests.security.caller import Caller
from tests.security.matrix import PLAUSIBLE_BODY, routes
from tests.security.snapshot import changes, snapshot
from tests.security.world import CUSTOMER_PASSWORD, STAFF_PASSWORD

SESSION = "ctvms_session"


def _actor_for(route) -> str:
    if route.public:
        return "anonymous"
    for actor, role in (("admin", "admin"), ("a", "customer"), ("owner", "owner")):
        if role in route.roles:
            return actor
    return "agent"


def test_every_form_refuses_a_post_without_a_valid_csrf_token_and_changes_nothing(
    world, world_app, web
):
    """Each form route, posted by someone allowed on it with a body it would accept, but with
    no token, a forged one, one from another browser, or the token without its cookie."""
    callers: dict[str, Caller] = {}
    with TestClient(world_app, base_url="http://127.0.0.1") as stranger:
        stranger.get("/login")
        foreign_cookie = stranger.cookies.get("ctvms_csrf")
        foreign_token = csrf_token(stranger, "/login")
    failures = []
    forms = [r for r in routes(world_app) if r.is_write and not r.is_api]
    for actor in {_actor_for(route) for route in forms}:
        callers[actor] = Caller(web, world, actor, fresh_sessions=False)
        if actor != "anonymous":
            callers[actor].sign_in()
    before = run(snapshot())
    for route in forms:
        actor = _actor_for(route)
        caller = callers[actor]
        own = world.account(actor) if actor in ("a", "b") else world.a
        body = {**PLAUSIBLE_BODY, "login": world.a.login, "current": CUSTOMER_PASSWORD}
        attempts = {
            "no token": (caller.csrf_cookie, None),
            "forged token": (caller.csrf_cookie, caller.csrf_token[:-6] + "AAAAAA"),
            "another browser's token": (caller.csrf_cookie, foreign_token),
            "token without its cookie": (None, caller.csrf_token),
            "another browser's pair mixed": (foreign_cookie, caller.csrf_token),
        }
        for name, pair in attempts.items():
            response = caller.send(route, route.path(world, own), body=body, csrf=pair)
            if response.status_code != 403:
                failures.append(f"{route} with {name}: {response.status_code}")
    assert len(forms) >= 20
    assert not failures, "\n".join(failures)
    assert changes(before, run(snapshot())) == []
    # POST /logout was among them: the sessions it was sent with are still alive.
    for caller in callers.values():
        if caller.actor == "anonymous":
            continue
        web.cookies.clear()
        web.cookies.set(SESSION, caller.tokens["web"])
        assert web.get("/account/password", follow_redirects=False).status_code == 200


def _set_cookies(response) -> dict[str, str]:
    found = {}
    for header in response.headers.get_list("set-cookie"):
        name = header.split("=", 1)[0].strip()
        found[name] = header.lower()
    return found


def _all_cookies(client, world, *, login_name: str, password: str) -> dict[str, str]:
    cookies = _set_cookies(client.get("/login"))
    cookies.update(_set_cookies(login(client, login_name, password)))
    cookies.update(_set_cookies(client.get("/lang/en?next=/", follow_redirects=False)))
    return cookies


@pytest.mark.parametrize("secure", [False, True])
def test_every_cookie_is_httponly_samesite_and_secure_when_configured(secure, world):
    from appliance.web.app import create_app

    settings = dataclasses.replace(world.settings, secure_cookies=secure)
    scheme = "https" if secure else "http"
    with TestClient(create_app(settings, queue=False), base_url=f"{scheme}://127.0.0.1") as c:
        cookies = _all_cookies(c, world, login_name="the-admin", password=STAFF_PASSWORD)
    assert {SESSION, "ctvms_csrf", "ctvms_lang"} <= set(cookies)
    for name, header in cookies.items():
        assert "httponly" in header, name
        assert "samesite=lax" in header or "samesite=strict" in header, name
        assert ("; secure" in header) is secure, name
    assert "samesite=strict" in cookies["ctvms_csrf"]


def test_a_made_up_session_id_planted_before_login_is_not_adopted(world, web):
    """Fixation with an id the attacker invents (the planted-valid-session case is in
    tests/accounts): the box issues its own id, for staff and for customers alike."""
    for login_name, password in (("the-admin", STAFF_PASSWORD), (world.a.login, CUSTOMER_PASSWORD)):
        web.cookies.clear()
        planted = "attacker-chosen-session-id-0123456789abcdef"
        web.cookies.set(SESSION, planted)
        response = login(web, login_name, password)
        issued = _set_cookies(response)[SESSION].split(";")[0].split("=", 1)[1]
        assert issued and issued != planted
        web.cookies.clear()
        web.cookies.set(SESSION, planted)
        assert web.get("/account/password", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "/\\evil.example/",
        "/\\/evil.example/",
        "/\t/evil.example/",
        "/\n/evil.example/",
        "https://evil.example/",
        "javascript:alert(1)",
        "\\\\evil.example",
    ],
)
def test_redirects_after_login_or_a_language_change_stay_on_the_box(target, world, web):
    change = web.get("/lang/en", params={"next": target}, follow_redirects=False)
    assert change.headers["location"] == "/"
    response = post_form(
        web,
        "/login",
        {"login": "the-admin", "password": STAFF_PASSWORD, "next": target},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/"


def _csp(response) -> dict[str, list[str]]:
    policy = {}
    for part in response.headers.get("content-security-policy", "").split(";"):
        words = part.split()
        if words:
            policy[words[0].lower()] = words[1:]
    return policy


def _header_problems(response) -> list[str]:
    problems = []
    csp = _csp(response)
    scripts = csp.get("script-src", csp.get("default-src"))
    if not scripts:
        problems.append("no script-src")
    elif {"'unsafe-inline'", "'unsafe-eval'", "*", "data:"} & set(scripts):
        problems.append(f"script-src {scripts}")
    if csp.get("frame-ancestors") not in (["'none'"], ["'self'"]):
        problems.append(f"frame-ancestors {csp.get('frame-ancestors')}")
    if csp.get("object-src", csp.get("default-src")) != ["'none'"]:
        problems.append("object-src")
    if csp.get("base-uri") not in (["'none'"], ["'self'"]):
        problems.append("base-uri")
    if response.headers.get("x-content-type-options") != "nosniff":
        problems.append("nosniff")
    referrer = response.headers.get("referrer-policy")
    if referrer not in ("same-origin", "no-referrer", "strict-origin"):
        problems.append(f"referrer-policy {referrer}")
    return problems


def _inline_script_problems(response) -> list[str]:
    """Markup the policy would block (so a page relying on it is broken): inline scripts,
    ``on...=`` handlers and ``javascript:`` links."""
    if "text/html" not in response.headers.get("content-type", ""):
        return []
    page = html(response)
    problems = []
    for script in page.find_all("script"):
        if not script.get("src") and script.get("type") not in ("application/json",):
            problems.append("inline <script>")
    for tag in page.find_all(True):
        for attribute, value in tag.attrs.items():
            if attribute.lower().startswith("on"):
                problems.append(f"<{tag.name} {attribute}>")
            if isinstance(value, str) and value.strip().lower().startswith("javascript:"):
                problems.append(f"<{tag.name} {attribute}=javascript:>")
    return problems


@pytest.mark.parametrize("actor", ["anonymous", "a", "admin"])
def test_every_page_and_api_answer_carries_the_security_headers(actor, world, world_app, web):
    """Every GET route (answers, errors and redirects alike) as a visitor, a customer and an
    admin; plus the static files and the OpenAPI document."""
    caller = Caller(web, world, actor, fresh_sessions=False)
    own = world.account(actor) if actor in ("a", "b") else world.a
    failures = []
    for route in routes(world_app):
        if route.is_write:
            continue
        response = caller.send(route, route.path(world, own))
        for problem in _header_problems(response) + _inline_script_problems(response):
            failures.append(f"{route} as {actor} ({response.status_code}): {problem}")
    for path in ("/static/app.css", "/schema/openapi.json", "/no-such-page", "/api/v1/nothing"):
        response = web.get(path)
        for problem in _header_problems(response):
            failures.append(f"{path}: {problem}")
    assert not failures, "\n".join(sorted(set(failures)))
