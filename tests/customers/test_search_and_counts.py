"""Search paging and the dashboard counts, on the query shapes the indexes of migration 0008
serve: archived customers stay out, pages neither repeat nor skip anyone."""

from __future__ import annotations

import datetime as dt
import sqlite3

from appliance import db
from appliance.customers import service as customers
from appliance.customers.tables import Connection
from tests.helpers import SYSTEM, make_customer, make_plan


async def test_pages_follow_the_name_then_cover_everyone_once(settings):
    # Same names on purpose: the order must still be total, or pages would repeat people.
    made = [await make_customer(settings, name=f"Sílvia Prado {i % 3}") for i in range(7)]
    await make_customer(settings, name="Otávio Lima")
    first = await customers.search_customers("silvia pra", per_page=3)
    second = await customers.search_customers("silvia pra", page=2, per_page=3)
    third = await customers.search_customers("silvia pra", page=3, per_page=3)
    assert first.total == second.total == 7 and first.pages == 3
    seen = [r["id"] for page in (first, second, third) for r in page.rows]
    assert sorted(seen, key=str) == sorted((c["id"] for c in made), key=str)
    names = [r["name"] for page in (first, second, third) for r in page.rows]
    assert names == sorted(names)
    assert (await customers.search_customers("silvia pra", page=9, per_page=3)).rows == []


async def test_archived_customers_are_out_of_search_counts_and_renewals(settings):
    cable = await make_plan(service="cable")
    broadband = await make_plan(service="broadband")
    due = dt.date(2026, 3, 10)

    async def subscriber(name: str, *, status: str) -> dict:
        customer = await make_customer(
            settings,
            name=name,
            cable_plan=str(cable["id"]),
            cable_registered_on="2026-01-05",
            broadband_plan=str(broadband["id"]),
            broadband_registered_on="2026-01-05",
        )
        # Statuses and expiry set directly: billing rules may move them at creation.
        await Connection.update(
            {Connection.status: "active", Connection.expires_on: dt.date(2026, 4, 1)}
        ).where(Connection.customer == customer["id"])
        await Connection.update({Connection.status: status, Connection.expires_on: due}).where(
            (Connection.customer == customer["id"]) & (Connection.service == "cable")
        )
        return customer

    await subscriber("Ana Reis", status="active")
    await subscriber("Bia Reis", status="suspended")
    gone = await subscriber("Caio Reis", status="active")
    await customers.archive_customer(gone["id"], actor=SYSTEM)

    counts = await customers.connection_counts()
    assert counts["cable"] == {"active": 1, "inactive": 0, "suspended": 1}
    assert counts["broadband"] == {"active": 2, "inactive": 0, "suspended": 0}
    assert await customers.renewals_due(due) == {"cable": 2}
    found = await customers.search_customers("reis")
    assert found.total == 2 and {r["name"] for r in found.rows} == {"Ana Reis", "Bia Reis"}
    archived = await customers.search_customers("reis", archived=True)
    assert [r["id"] for r in archived.rows] == [gone["id"]]

    await customers.restore_customer(gone["id"], actor=SYSTEM)
    assert (await customers.connection_counts())["cable"]["active"] == 2


def test_sqlite_answers_counts_and_search_from_the_indexes(settings):
    """The plans the benchmark depends on: no join with every customer, no table scan."""
    if not db.is_sqlite():
        return
    with sqlite3.connect(settings.sqlite_path) as conn:

        def plan(sql: str, *args: str) -> str:
            return " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args))

        counts = plan(
            "SELECT service, status, COUNT(*) AS n FROM connections WHERE customer NOT IN "
            "(SELECT id FROM customers WHERE archived_at IS NOT NULL) GROUP BY service, status"
        )
        assert "COVERING INDEX connections_counts" in counts
        assert "customers_archived" in counts
        renewals = plan(
            "SELECT service, COUNT(*) AS n FROM connections WHERE expires_on = ? AND customer "
            "NOT IN (SELECT id FROM customers WHERE archived_at IS NOT NULL) GROUP BY service",
            "2026-03-10",
        )
        assert "COVERING INDEX connections_expiry" in renewals
        search = plan(
            'SELECT COUNT(*) FROM "customers" WHERE "customers"."archived_at" IS NULL '
            'AND "customers"."search_text" LIKE ?',
            "%reis%",
        )
        assert "COVERING INDEX customers_search" in search
