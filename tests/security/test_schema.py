"""schemathesis against the app's own OpenAPI document, in process (ASGI), as an admin and as a
customer with bearer tokens from ``createToken``: for every operation, generated requests must
never meet a server error, and every answer must be one the schema declares (status, content
type, body). Bounded to a few examples per operation so it stays quick."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.security.world import CUSTOMER_PASSWORD, STAFF_PASSWORD

EXAMPLES = 12
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Operations that would end the token the run uses, or lock its account, if fuzzed with it.
SKIPPED = {"createToken"}


def _token(web, login: str, password: str) -> str:
    answer = web.post("/api/v1/auth/token", json={"username": login, "password": password})
    assert answer.status_code == 201, answer.text
    return answer.json()["access_token"]


@pytest.mark.parametrize("actor", ["admin", "customer"])
def test_every_api_operation_answers_as_its_schema_says(actor, world, world_app, web):
    if actor == "admin":
        token = _token(web, "the-admin", STAFF_PASSWORD)
    else:
        token = _token(web, world.a.login, CUSTOMER_PASSWORD)
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", world_app)
    failures: list[str] = []
    ran = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.definition.raw.get("operationId") in SKIPPED:
            continue
        ran.append(operation.label)

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            check()
        except Unsatisfiable:
            failures.append(f"{operation.label}: no request could be generated")
        except Exception as exc:  # one operation's failure must not hide the others'
            failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:1500]}")
    assert len(ran) >= 10
    assert not failures, "\n\n".join(failures)
