"""The bare health page answers without a session and without the database."""

from __future__ import annotations


def test_healthz_is_public_plain_ok_and_sets_no_session(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.text == "ok"
    assert response.headers["content-type"].startswith("text/plain")
    assert "ctvms_session" not in response.cookies
