"""The box's sync page: status, "Sync now" against an unreachable and a real central, the
warnings every admin page carries, and who may see it."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import threading
from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from appliance import clock
from appliance.sync import hlc
from appliance.sync.state import pending_count, update_state
from appliance.web.app import create_app
from tests.conftest import USE_PG, make_settings, run
from tests.helpers import (
    customer_password,
    html,
    login,
    make_customer,
    make_staff,
    post_form,
)


def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def admin(client):
    login(client, run(make_staff("admin"))["username"])
    return client


def _status(page) -> dict[str, str]:
    return {dd["data-field"]: dd.get_text(" ", strip=True) for dd in page.select("dd[data-field]")}


def test_an_unenrolled_box_says_how_to_enroll_and_offers_no_sync_button(admin):
    page = html(admin.get("/sync"))
    assert "ctvms sync enroll" in page.find(id="not-enrolled").get_text()
    assert page.find(id="sync-now") is None
    assert _status(page)["pending"] == "0"
    # The navigation and the System page lead here.
    assert page.find("a", href="/sync")
    assert html(admin.get("/system")).select_one(".subnav a[href='/sync']")


def test_sync_now_against_an_unreachable_central_shows_the_error_and_what_waits(admin, settings):
    url = f"http://127.0.0.1:{closed_port()}"
    run(update_state(central_url=url, box_secret="s3cret", enrolled_at=clock.now()))
    run(make_customer(settings, name="Waiting Customer"))
    waiting = run(pending_count())
    assert waiting > 0

    response = post_form(admin, "/sync/now", {}, page="/sync")
    assert response.status_code == 200
    page = html(response)
    outcome = page.find(id="sync-outcome")
    assert outcome["data-outcome"] == "error"
    assert "central unreachable" in outcome.get_text()
    status = _status(page)
    assert status["central_url"] == url
    assert status["pending"] == str(waiting)
    assert "central unreachable" in status["last_error"]
    assert status["last_success"] == "Never"
    assert status["last_attempt"] != "Never"
    # The secret never reaches the page.
    assert "s3cret" not in response.text

    # Reloaded later, the page still tells the last error.
    again = _status(html(admin.get("/sync")))
    assert "central unreachable" in again["last_error"]


class _NotCentral(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = b"<html>a router's login page</html>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_sync_now_against_a_server_that_is_not_central_says_so(admin, settings):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotCentral)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        run(update_state(central_url=url, box_secret="s3cret", enrolled_at=clock.now()))
        run(make_customer(settings))
        response = post_form(admin, "/sync/now", {}, page="/sync")
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 200
    outcome = html(response).find(id="sync-outcome")
    assert outcome["data-outcome"] == "error"
    assert "not come from a CTVMS central" in outcome.get_text()


@pytest.mark.skipif(USE_PG, reason="a box keeps its sync state in SQLite (the banner reads it)")
def test_admin_pages_warn_of_a_far_clock_a_needed_update_and_stopped_numbering(admin):
    assert not html(admin.get("/")).select(".sync-alert")
    run(
        update_state(
            clock_offset_ms=hlc.MAX_DRIFT_MS + 120_000,
            needs_update=True,
            numbering_blocked=True,
            blocked_reason="restored from an old backup",
        )
    )
    alerts = [a.get_text(" ", strip=True) for a in html(admin.get("/")).select(".sync-alert")]
    assert len(alerts) == 3
    assert "behind central" in alerts[0] and "7 minutes" in alerts[0]
    assert "needs an update" in alerts[1]
    assert "numbering" in alerts[2]
    page = html(admin.get("/sync"))
    assert not page.select(".sync-alert")  # the page says it in full itself
    assert "restored from an old backup" in page.find(id="numbering-blocked").get_text()
    assert page.find(id="needs-update") and page.find(id="clock-warning")


def test_agents_and_customers_are_refused(client, settings):
    agent = run(make_staff("agent"))
    login(client, agent["username"])
    assert client.get("/sync").status_code == 403
    assert client.get("/payments").status_code == 403
    # With a valid CSRF token (from a page agents may open): refused for the role.
    assert post_form(client, "/sync/now", {}, page="/customers").status_code == 403

    customer = run(make_customer(settings))
    password = run(customer_password(customer["id"]))
    client.cookies.clear()
    login(client, customer["crf"], password)
    assert client.get("/sync").status_code == 403
    assert client.get("/sync/conflicts").status_code == 403


def test_central_pages_are_not_found_on_a_box(admin):
    for path in ("/sync/offices", "/sync/conflicts", "/sync/dead-letters", "/sync/overpayments"):
        assert admin.get(path).status_code == 404, path


# -- against a real central ----------------------------------------------------------------------


@pytest.fixture
def box_client(central, make_box) -> Iterator[tuple[TestClient, object]]:
    box = run(make_box(central, "AA"))
    run(box.use())
    app = create_app(box.settings, queue=False)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        login(c, run(make_staff("admin"))["username"])
        yield c, box


def test_sync_now_sends_the_pending_changes_to_a_real_central(box_client, central):
    client, box = box_client
    run(make_customer(box.settings, name="Sent Customer"))
    assert run(pending_count()) > 0

    response = post_form(client, "/sync/now", {}, page="/sync")
    assert response.status_code == 200
    page = html(response)
    outcome = page.find(id="sync-outcome")
    assert outcome["data-outcome"] == "ok", outcome.get_text()
    status = _status(page)
    assert status["pending"] == "0"
    assert status["last_error"] == "—"
    assert status["last_success"] != "Never"
    assert status["central_url"] == central.url

    from appliance.customers.tables import Customer

    run(central.use())
    names = [r["name"] for r in run(Customer.select(Customer.name))]
    assert "Sent Customer" in names


@pytest.mark.skipif(USE_PG, reason="a box keeps its sync state in SQLite (the banner reads it)")
def test_the_banner_reads_a_replaced_database_file_anew(settings, sqlite_template, tmp_path):
    from appliance.data_version import KEEP_CONNECTIONS, _local
    from appliance.sync.review import box_alerts

    run(update_state(needs_update=True))
    assert len(box_alerts(settings)) == 1
    # A restore puts another file in its place: the kept connection must not read the old one.
    spare = tmp_path / "restored.sqlite3"
    shutil.copy(sqlite_template, spare)
    os.replace(spare, settings.sqlite_path)
    assert box_alerts(settings) == []
    # Many databases in one process (the tests): only a few connections stay open.
    for n in range(KEEP_CONNECTIONS + 3):
        folder = tmp_path / f"other-{n}"
        folder.mkdir()
        shutil.copy(sqlite_template, folder / "ctvms.sqlite3")
        box_alerts(make_settings(folder))
    assert len(_local.__dict__) == KEEP_CONNECTIONS
