"""Errors a user can run into that are nobody's input mistake: a write that waited out SQLite's
busy timeout (a long job held the write lock) answers a clear 503 that says to try again, never
a 500, and nothing was saved."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from litestar.testing import TestClient

from appliance import db
from appliance.web.app import create_app
from tests.conftest import USE_PG, run
from tests.helpers import STAFF_PASSWORD, csrf_token, html, login, make_staff

pytestmark = pytest.mark.skipif(USE_PG, reason="the write lock and its timeout are SQLite's")

BUSY = "busy with a long task"


@contextmanager
def write_lock_held(settings) -> Iterator[None]:
    """Another process's write transaction, as the worker's job would hold it."""
    other = sqlite3.connect(settings.sqlite_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


@pytest.fixture
def impatient_client(settings, monkeypatch) -> Iterator[TestClient]:
    """The app with a busy timeout of 0.2 s instead of 15, so waiting it out is quick."""
    monkeypatch.setattr(db, "BUSY_TIMEOUT_S", 0.2)
    app = create_app(settings, queue=False)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client


def test_a_login_waiting_out_the_write_lock_gets_a_page_saying_try_again(
    settings, impatient_client
):
    staff = run(make_staff("admin"))
    token = csrf_token(impatient_client)
    form = {"login": staff["username"], "password": STAFF_PASSWORD, "_csrf_token": token}
    with write_lock_held(settings):
        response = impatient_client.post("/login", data=form, follow_redirects=False)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert BUSY in html(response).get_text(" ", strip=True)
    # Once the lock is free, the same person logs in.
    login(impatient_client, staff["username"])
    assert impatient_client.get("/", follow_redirects=False).status_code == 200


def test_an_api_write_waiting_out_the_write_lock_answers_json_and_saves_nothing(
    settings, impatient_client
):
    staff = run(make_staff("admin"))
    body = {"username": staff["username"], "password": STAFF_PASSWORD}
    with write_lock_held(settings):
        response = impatient_client.post("/api/v1/auth/token", json=body)
    assert response.status_code == 503
    assert response.json()["error"] == "busy"
    assert BUSY in response.json()["message"]
    stored = sqlite3.connect(settings.sqlite_path)
    count = "SELECT count(*) FROM sessions WHERE kind = 'api'"
    assert stored.execute(count).fetchone()[0] == 0
    again = impatient_client.post("/api/v1/auth/token", json=body)
    assert again.status_code in (200, 201), again.text
    assert stored.execute(count).fetchone()[0] == 1
    stored.close()
