"""Every route × every actor (anonymous, customer A, customer B, agent, admin, owner), with the
expected answer derived from the route's own role declaration (see tests/security/matrix.py)."""

from __future__ import annotations

import pytest

from tests.conftest import run
from tests.security.caller import Caller
from tests.security.matrix import (
    ACTORS,
    PLAUSIBLE_BODY,
    Route,
    routes,
    undeclared,
    unknown_params,
)
from tests.security.snapshot import changes, snapshot


def expected_problem(route: Route, actor: str, response) -> str | None:
    """What is wrong with ``response`` to ``actor`` on ``route``, or None when it is right."""
    status = response.status_code
    location = response.headers.get("location", "")
    if status >= 500:
        return f"server error {status}"
    if route.public:
        return None
    if actor == "anonymous":
        if route.is_api:
            return None if status == 401 else f"{status}, expected 401"
        if status == 303 and location.startswith("/login?next="):
            return None
        return f"{status} {location}, expected a redirect to /login"
    if not route.allows(actor):
        return None if status == 403 else f"{status}, expected 403"
    if status in (401, 403):
        return f"{status}, but role {ACTORS[actor]} is declared"
    # The refusal of an anonymous page request carries ``next``; a logout's redirect does not.
    if status in (302, 303, 307) and location.startswith("/login?next="):
        return f"sent to {location}, but role {ACTORS[actor]} is declared"
    return None


def test_every_route_declares_known_roles_or_public(world_app):
    assert not undeclared(world_app)


def test_every_path_parameter_is_filled_from_the_seeded_office(world_app):
    """A new route whose parameter the matrix cannot fill would only meet made-up ids: name the
    parameter in ``tests/security/matrix.py`` PARAMS (and OWNED if it is a customer's)."""
    assert not unknown_params(world_app)


def test_the_matrix_reaches_every_kind_of_customer_data(world_app):
    owned = {r.template for r in routes(world_app) if r.owned}
    assert {
        "/invoices/{number:str}",
        "/invoices/{number:str}/pdf",
        "/customers/{customer_id:uuid}",
        "/api/v1/customers/{customer_id:uuid}",
        "/api/v1/invoices/{number:str}",
        "/api/v1/complaints/{complaint_id:uuid}",
        "/portal/complaints/{complaint_id:uuid}",
    } <= owned


@pytest.mark.parametrize("actor", list(ACTORS))
def test_each_actor_gets_the_declared_answer_on_every_route(actor, world, world_app, web):
    """Reads first, then writes (empty bodies: an allowed write may refuse its input but must
    not crash), customers on their own ids, staff on customer A's."""
    caller = Caller(web, world, actor)
    own = world.account(actor) if actor in ("a", "b") else world.a
    failures = []
    checked = 0
    for route in sorted(routes(world_app), key=lambda r: (r.is_write, r.template, r.method)):
        response = caller.send(route, route.path(world, own))
        problem = expected_problem(route, actor, response)
        if problem:
            failures.append(f"{route} as {actor}: {problem}")
        checked += 1
    assert checked > 50
    assert not failures, "\n".join(failures)


def _leaks(response, marks: list[str]) -> list[str]:
    """The marks found in the answer, leaving out the echo of the requested path itself (the
    language links of every page carry it as ``next``)."""
    text = response.text.replace(response.request.url.path, "")
    return [m for m in marks if m and m in text]


@pytest.mark.parametrize("actor", ["a", "b"])
def test_a_customer_cannot_read_or_change_the_other_customers_data(actor, world, world_app, web):
    """Every route that takes a customer's id, invoice or complaint, called by one customer
    with the other's real ids (what a guess or a copied link gives): refused, no data shown,
    and for writes (sent with a body that would be accepted) nothing recorded."""
    # One session throughout: a session created mid-test must not count as a change below.
    caller = Caller(web, world, actor, fresh_sessions=False)
    caller.sign_in()
    other = world.other(actor)
    failures = []
    exercised = []
    for route in sorted(routes(world_app), key=lambda r: (r.is_write, r.template, r.method)):
        if not route.owned:
            continue
        before = run(snapshot()) if route.is_write else None
        response = caller.send(route, route.path(world, other), body=dict(PLAUSIBLE_BODY))
        status = response.status_code
        if route.allows(actor):
            exercised.append(route.template)
            if status not in (403, 404) and not (route.is_write and 400 <= status < 500):
                failures.append(f"{route}: {status} for the other customer's id")
        elif status != 403:
            failures.append(f"{route}: {status}, expected 403")
        if leaked := _leaks(response, other.marks()):
            failures.append(f"{route}: shows {leaked}")
        if before is not None and (changed := changes(before, run(snapshot()))):
            failures.append(f"{route}: changed {changed}")
    assert {"/invoices/{number:str}", "/api/v1/complaints/{complaint_id:uuid}"} <= set(exercised)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("actor", ["a", "b"])
def test_a_customer_cannot_reach_the_other_through_query_parameters(actor, world, world_app, web):
    """The read routes a customer may use, asked about the other customer in the query string
    (``?customer_id=``, ``?crf=``, a search): the answer is about the caller or nobody."""
    caller = Caller(web, world, actor)
    own, other = world.account(actor), world.other(actor)
    query = {
        "customer_id": other.id,
        "customer": other.id,
        "crf": other.customer["crf"],
        "number": other.invoice,
        "complaint_id": str(other.complaint["id"]),
        "q": other.customer["crf"],
    }
    failures = []
    for route in routes(world_app):
        if route.is_write or route.public or not route.allows(actor):
            continue
        response = caller.send(route, route.path(world, own), query=query)
        if response.status_code >= 500:
            failures.append(f"{route}: server error {response.status_code}")
        if leaked := _leaks(response, other.marks()):
            failures.append(f"{route}: shows {leaked}")
    assert not failures, "\n".join(failures)
