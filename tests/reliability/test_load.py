"""A short load in ``make test``: ten clients for ten seconds against a real server and worker
on a small demo office (``bench/load.py``; the 60 s run is ``make bench``). No timing is
asserted: only that nothing failed, no payment was lost, duplicated or recorded unannounced,
the invoice numbers have no gap, and the logs show no lock error."""

from __future__ import annotations

import contextlib

from bench import load
from tests.reliability.office import ADMIN_PASSWORD, ADMIN_USERNAME, page_client, prepare

SECONDS = 10.0


def test_ten_clients_lose_no_payment_and_see_no_error(tmp_path):
    server, demo = prepare(tmp_path / "office", customers=120, env={"CTVMS_MIN_PAYMENT": "10"})
    with server:
        server.start()
        server.start_worker()
        server.wait_idle(quiet_for=1.0, within=120)
        with contextlib.closing(
            page_client(server.base_url, ADMIN_USERNAME, ADMIN_PASSWORD)
        ) as admin:
            cookies = dict(admin.cookies.items())
        who = load.cast(
            server,
            agents=4,
            customers=4,
            admins=2,
            admin_cookies=cookies,
            demo_password=demo["customer_password"],
            min_payment_minor=1000,
        )
        report = load.load_office(server, who, seconds=SECONDS)
        _check(report)


def _check(report: load.LoadReport) -> None:
    assert load.problems(report) == []
    assert report.audit["acknowledged"] > 0, "no payment was recorded at all"
    assert report.audit["stored"] == report.audit["acknowledged"]
    kinds = set(report.latencies)
    for kind in ("agent: record payment (API)", "customer: portal", "admin: search"):
        assert kind in kinds, f"no {kind} request ran"
    assert report.audit["integrity"] == "ok"
