"""Monthly charges: the year updater, monthly billing, and keeping each connection's expiry in
step with its grid.

Everything that touches many connections is one SQL statement per year (or per run), so 100,000
connections take seconds. Each function may be scoped to one customer (``customer_id``), which
is how a new or edited customer gets their months at once.
"""

# SQL text here is assembled from constants and the dialect helpers only; values travel as
# parameters.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from appliance import clock
from appliance.billing import rules, sql
from appliance.billing.tables import BilledConnection, Charge
from appliance.customers.tables import Connection
from appliance.db import write_transaction
from appliance.settings import Settings

log = logging.getLogger(__name__)


def _scope(customer_id: Any, alias: str = "c") -> tuple[str, list[Any]]:
    if customer_id is None:
        return "", []
    return f" AND {alias}.customer = {{}}", [customer_id]


async def _initialise(now: dt.datetime, customer_id: Any = None) -> int:
    """Start billing for connections billing has not seen: record what was paid before the box
    (from the expiry typed at registration), and set the expiry to match."""
    where, args = _scope(customer_id)
    opening = sql.greatest(
        f"coalesce({sql.covered_through('c.expires_on')}, 0)", sql.month_before("c.registered_on")
    )
    created = await sql.execute_count(
        "INSERT INTO billing_connections (id, connection, opening_through, rows_through, "
        f"created_at) SELECT {sql.uuid7()}, c.id, {opening}, 0, {{}} FROM connections c "
        "WHERE NOT EXISTS (SELECT 1 FROM billing_connections b WHERE b.connection = c.id)" + where,
        now,
        *args,
    )
    if created:
        await sql.execute_count(
            f"UPDATE connections SET expires_on = {sql.month_end('b.opening_through')} "
            "FROM billing_connections b WHERE b.connection = connections.id "
            "AND b.rows_through = 0" + where.replace("c.customer", "connections.customer"),
            *args,
        )
    return created


async def _create_rows(year: int, now: dt.datetime, customer_id: Any = None) -> int:
    """Scheduled rows for every year up to ``year`` that a connection still lacks."""
    where, args = _scope(customer_id)
    reg_year = f"({sql.period_of('c.registered_on')} / 100)"
    first = await sql.rows(
        f"SELECT min({sql.greatest('b.rows_through + 1', reg_year)}) AS y "
        "FROM billing_connections b JOIN connections c ON c.id = b.connection "
        "WHERE b.rows_through < {}" + where,
        year,
        *args,
    )
    start = first[0]["y"] if first and first[0]["y"] is not None else None
    created = 0
    if start is None:
        return 0
    for y in range(int(start), year + 1):
        created += await sql.execute_count(
            "INSERT INTO billing_charges (id, customer, connection, service, year, month, "
            "state, plan, plan_name, amount, paid, opening, billed_at, created_at) "
            f"SELECT {sql.uuid7()}, c.customer, c.id, c.service, {{}}, m.month, 'scheduled', "
            f"c.plan, p.name, p.monthly_price, 0, {sql.boolean(False)}, NULL, {{}} "
            "FROM billing_connections b JOIN connections c ON c.id = b.connection "
            f"JOIN plans p ON p.id = c.plan CROSS JOIN {sql.months_table()} m "
            "WHERE b.rows_through < {} "
            f"AND {sql.period_of('c.registered_on')} <= {{}} * 100 + m.month"
            + where
            + " AND NOT EXISTS (SELECT 1 FROM billing_charges x WHERE x.connection = c.id "
            "AND x.year = {} AND x.month = m.month)",
            y,
            now,
            y,
            y,
            *args,
            y,
        )
    await sql.execute_count(
        "UPDATE billing_connections SET rows_through = {} WHERE rows_through < {}"
        + (
            " AND connection IN (SELECT id FROM connections WHERE customer = {})"
            if customer_id is not None
            else ""
        ),
        year,
        year,
        *args,
    )
    return created


async def _bill(through: int, now: dt.datetime, customer_id: Any = None) -> dict[str, int]:
    """Fix the price of every scheduled month up to ``through`` (a period), or waive it while
    the connection is suspended or its customer removed. Months paid before the box are
    billed as paid."""
    where, args = _scope(customer_id)
    p = "(billing_charges.year * 100 + billing_charges.month)"
    covered = f"{p} <= b.opening_through"
    off = "(c.status = 'suspended' OR u.archived_at IS NOT NULL)"
    year, month = rules.split(through)
    billed = await sql.execute_count(
        "UPDATE billing_charges SET "
        f"state = CASE WHEN {covered} THEN 'billed' WHEN {off} THEN 'waived' ELSE 'billed' END, "
        "plan = c.plan, plan_name = p.name, "
        f"amount = CASE WHEN {covered} THEN p.monthly_price WHEN {off} THEN 0 "
        "ELSE p.monthly_price END, "
        f"paid = CASE WHEN {covered} THEN p.monthly_price ELSE 0 END, "
        f"opening = ({covered}), billed_at = {{}} "
        "FROM connections c JOIN plans p ON p.id = c.plan "
        "JOIN customers u ON u.id = c.customer "
        "JOIN billing_connections b ON b.connection = c.id "
        "WHERE billing_charges.connection = c.id AND billing_charges.state = 'scheduled' "
        "AND (billing_charges.year < {} OR (billing_charges.year = {} "
        "AND billing_charges.month <= {}))" + where,
        now,
        year,
        year,
        month,
        *args,
    )
    return {"billed": billed}


async def _customer_up_to_date(customer_id: Any, year: int, through: int) -> bool:
    """True when catch-up has nothing to do for one customer: every connection started with
    rows up to ``year``, and no month up to ``through`` (a period) still scheduled.

    One indexed read; the writes of a catch-up take five statements to find nothing to do, and
    every payment asks (the worker's monthly billing has usually run already)."""
    year_, month = rules.split(through)
    rows = await sql.rows(
        "SELECT EXISTS (SELECT 1 FROM connections c "
        "LEFT JOIN billing_connections b ON b.connection = c.id "
        "WHERE c.customer = {} AND (b.connection IS NULL OR b.rows_through < {})) AS behind, "
        "EXISTS (SELECT 1 FROM connections c JOIN billing_charges x ON x.connection = c.id "
        "WHERE c.customer = {} AND x.state = 'scheduled' "
        "AND (x.year < {} OR (x.year = {} AND x.month <= {}))) AS unbilled",
        customer_id,
        year,
        customer_id,
        year_,
        year_,
        month,
    )
    return bool(rows) and not rows[0]["behind"] and not rows[0]["unbilled"]


async def catch_up(settings: Settings, *, year: int, customer_id: Any = None) -> dict[str, int]:
    """Rows up to ``year`` and billing up to the current month, inside the caller's
    transaction (the lock is taken here)."""
    now = clock.now()
    today = clock.today(settings.tz)
    year = max(year, today.year)
    through = rules.period_of(today)
    await sql.lock_billing(settings.office_code)
    if customer_id is not None and await _customer_up_to_date(customer_id, year, through):
        return {"connections_started": 0, "rows_created": 0, "billed": 0}
    started = await _initialise(now, customer_id)
    created = await _create_rows(year, now, customer_id)
    billed = await _bill(through, now, customer_id)
    return {"connections_started": started, "rows_created": created, **billed}


async def ensure_year(settings: Settings, year: int | None = None) -> dict[str, Any]:
    """The year updater: rows for ``year`` (default: the office's current year) and every year
    missed before it, for every connection; then every month up to today billed.

    Idempotent: a second run finds nothing to do.
    """
    today = clock.today(settings.tz)
    year = year or today.year
    started = time.monotonic()
    async with write_transaction():
        await sql.bulk_cache()
        summary = await catch_up(settings, year=year)
    summary = {"year": year, **summary, "seconds": round(time.monotonic() - started, 2)}
    log.info("billing year update", extra=summary)
    return summary


async def bill_month(settings: Settings, year: int | None = None, month: int | None = None):
    """Make ``year``/``month`` (default: the current month) billable, with every earlier month
    still waiting. A month after the current one is refused: its price is not due yet."""
    today = clock.today(settings.tz)
    year = year or today.year
    month = month or (today.month if year == today.year else 12)
    target = rules.period(year, month)
    if not 1 <= month <= 12:
        raise ValueError("month must be 1 to 12")
    target = min(target, rules.period_of(today))
    started = time.monotonic()
    now = clock.now()
    async with write_transaction():
        await sql.lock_billing(settings.office_code)
        await sql.bulk_cache()
        initialised = await _initialise(now)
        created = await _create_rows(max(year, today.year), now)
        billed = await _bill(target, now)
    summary = {
        "period": f"{target // 100}-{target % 100:02d}",
        "connections_started": initialised,
        "rows_created": created,
        **billed,
        "seconds": round(time.monotonic() - started, 2),
    }
    log.info("billing month", extra=summary)
    return summary


# -- one customer ------------------------------------------------------------------------------


async def refresh_expiry(
    connection_ids: list[Any], *, today: dt.date, status_of: Any = None
) -> dict[Any, dt.date]:
    """Set each connection's expiry from its grid, and the status from the expiry for the
    connections in ``status_of`` (default: all of them). Connections billing has not started
    are left alone."""
    result: dict[Any, dt.date] = {}
    if not connection_ids:
        return result
    # The connections, their opening and every month of their grids in one read (a payment
    # calls this inside its transaction, for the one or two connections it paid).
    rows = await Charge.raw(
        "SELECT c.id, c.expires_on, c.status, b.opening_through, "
        "x.year, x.month, x.state, x.amount, x.paid FROM connections c "
        "JOIN billing_connections b ON b.connection = c.id "
        "LEFT JOIN billing_charges x ON x.connection = c.id "
        "WHERE c.id IN (" + ", ".join("{}" for _ in connection_ids) + ")",
        *connection_ids,
    )
    conns: dict[Any, dict[str, Any]] = {}
    months: dict[Any, list[rules.Month]] = {}
    for r in rows:
        conns.setdefault(r["id"], r)
        grid = months.setdefault(r["id"], [])
        if r["year"] is not None:
            grid.append(
                rules.Month(rules.period(r["year"], r["month"]), r["state"], r["amount"], r["paid"])
            )
    for conn_id, conn in conns.items():
        expiry = rules.expiry_date(months[conn_id], conn["opening_through"])
        values: dict[Any, Any] = {}
        if expiry != conn["expires_on"]:
            values[Connection.expires_on] = expiry
        if status_of is None or conn_id in status_of:
            status = rules.status_for(expiry, today)
            if status != conn["status"]:
                values[Connection.status] = status
        if values:
            values[Connection.updated_at] = clock.now()
            await Connection.update(values).where(Connection.id == conn_id)
        result[conn_id] = expiry
    return result


async def sync_customer(customer_id: Any, *, settings: Settings) -> None:
    """Bring one customer's billing up to date after their connections were created or edited
    (called inside the customer's transaction): months from registration to now, the current
    month billed again if a suspended connection was switched back on, expiry and status."""
    today = clock.today(settings.tz)
    now = clock.now()
    async with write_transaction():
        conns = await Connection.select(Connection.id, Connection.status).where(
            Connection.customer == customer_id
        )
        ids = [c["id"] for c in conns]
        known = (
            {
                r["connection"]
                for r in await BilledConnection.select(BilledConnection.connection).where(
                    BilledConnection.connection.is_in(ids)
                )
            }
            if ids
            else set()
        )
        await catch_up(settings, year=today.year, customer_id=customer_id)
        for conn in conns:
            if conn["status"] != "suspended":
                await _rebill_current(conn["id"], today, now)
        # A status the admin just chose (a stopped service) is left alone; a new connection
        # starts with the status its expiry gives.
        await refresh_expiry(
            ids,
            today=today,
            status_of={c["id"] for c in conns if c["id"] not in known},
        )


async def _rebill_current(connection_id: Any, today: dt.date, now: dt.datetime) -> bool:
    """Charge the current month of a connection whose month was waived (reconnection)."""
    rows = await Charge.raw(
        "SELECT ch.id, p.name, p.monthly_price FROM billing_charges ch "
        "JOIN connections c ON c.id = ch.connection JOIN plans p ON p.id = c.plan "
        "WHERE ch.connection = {} AND ch.year = {} AND ch.month = {} AND ch.state = 'waived'",
        connection_id,
        today.year,
        today.month,
    )
    if not rows:
        return False
    row = rows[0]
    await Charge.update(
        {
            Charge.state: "billed",
            Charge.plan_name: row["name"],
            Charge.amount: row["monthly_price"],
            Charge.paid: 0,
            Charge.billed_at: now,
        }
    ).where(Charge.id == row["id"])
    log.info("month billed on reconnection", extra={"connection_id": str(connection_id)})
    return True


async def reconnect(customer_id: Any, service: str, *, settings: Settings) -> bool:
    """Bill the current month of a suspended connection, so paying it switches it back on.

    Returns False when there is nothing to bill again (the month is already charged).
    """
    today = clock.today(settings.tz)
    async with write_transaction():
        await sql.lock_billing(settings.office_code)
        rows = await Connection.select(Connection.id).where(
            (Connection.customer == customer_id) & (Connection.service == service)
        )
        if not rows:
            return False
        await catch_up(settings, year=today.year, customer_id=customer_id)
        return await _rebill_current(rows[0]["id"], today, clock.now())
