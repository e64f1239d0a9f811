"""Monthly charges: the year updater, monthly billing, and keeping each connection's expiry in
step with its grid.

A month of a connection gets its row when it is billed (a month not billed yet is derived on
the grid), under an id every node derives alike. Everything that touches many connections is
set-based SQL, one statement per step (one per year of months to bill) for a slice of the
connections. Each step works on a :class:`Scope`: one customer's connections
(how a new or edited customer gets their months at once), or a slice of connection ids. The
office-wide jobs go through every connection in slices, one short write transaction each, so a
payment or a login waiting for SQLite's write lock gets it between two slices instead of
timing out behind a month's rows.
"""

# SQL text here is assembled from constants and the dialect helpers only; values travel as
# parameters.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from appliance import clock
from appliance.billing import rules, sql
from appliance.billing.tables import BilledConnection, Charge
from appliance.customers.tables import Connection
from appliance.db import write_transaction
from appliance.settings import Settings
from appliance.sync.state import unlogged

log = logging.getLogger(__name__)


# Connections per write transaction in the office-wide jobs. A month billed for 2,000
# connections is 2,000 rows, a few tens of milliseconds of holding the write lock here.
SLICE_CONNECTIONS = 2000
# Longest pause between two slices on SQLite. A writer waiting for the lock retries at most
# every 100 ms (SQLite's busy handler), and gets in during a pause (see _between_slices).
SLICE_PAUSE_S = 0.1


@dataclass(frozen=True)
class Scope:
    """The connections a step works on: one customer's (``customer``), or those whose id lies
    in (``after``, ``upto``], an open end meaning no bound. Nothing set: every connection."""

    customer: Any = None
    after: Any = None
    upto: Any = None

    def where(self, of_customer: str, *ids: str) -> tuple[str, list[Any]]:
        """``AND ...`` conditions and their values: ``of_customer`` (a condition with one
        ``{}`` for the customer's id) for one customer's scope, bounds on the id columns for a
        slice.

        A slice is stated on every id column given (columns the join makes equal), so the
        planner can walk whichever index it starts from."""
        parts: list[str] = []
        args: list[Any] = []
        if self.customer is not None:
            parts.append(of_customer)
            args.append(self.customer)
        for column in ids:
            if self.after is not None:
                parts.append(f"{column} > {{}}")
                args.append(self.after)
            if self.upto is not None:
                parts.append(f"{column} <= {{}}")
                args.append(self.upto)
        return "".join(f" AND {p}" for p in parts), args


EVERY = Scope()


async def slices(size: int = SLICE_CONNECTIONS) -> list[Scope]:
    """Every connection in slices of ``size`` ids, the last one open-ended so that a connection
    added while a job runs is still in it."""
    ids = [r["id"] for r in await sql.rows("SELECT id FROM connections ORDER BY id")]
    result: list[Scope] = []
    after = None
    for upto in ids[size - 1 :: size]:
        result.append(Scope(after=after, upto=upto))
        after = upto
    result.append(Scope(after=after))
    return result


async def _initialise(now: dt.datetime, scope: Scope = EVERY) -> int:
    """Start billing for connections billing has not seen: record what was paid before the box
    (from the expiry typed at registration), and set the expiry to match."""
    where, args = scope.where("c.customer = {}", "c.id")
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
        where, args = scope.where("connections.customer = {}", "connections.id")
        await sql.execute_count(
            f"UPDATE connections SET expires_on = {sql.month_end('b.opening_through')} "
            "FROM billing_connections b WHERE b.connection = connections.id "
            "AND b.rows_through = 0" + where,
            *args,
        )
    return created


async def _open_years(year: int, scope: Scope = EVERY) -> int:
    """Open every year up to ``year`` on the grids of the scope's connections: their months
    show as *not billed yet* until billing reaches them. No rows are made for them (a month
    gets its row when it is billed), so opening a year is one narrow update per connection."""
    where, args = scope.where(
        "connection IN (SELECT id FROM connections WHERE customer = {})", "connection"
    )
    return await sql.execute_count(
        "UPDATE billing_connections SET rows_through = {} WHERE rows_through < {}" + where,
        year,
        year,
        *args,
    )


async def _bill(through: int, now: dt.datetime, scope: Scope = EVERY) -> dict[str, int]:
    """Bill every month up to ``through`` (a period) that is not billed yet: its row is made
    with the price fixed, or waived while the connection is suspended or its customer
    removed. Months paid before the box are billed as paid."""
    billed = await _bill_scheduled(through, now, scope)
    billed += await _bill_missing(through, now, scope)
    return {"billed": billed}


def _billed_columns(period: str) -> dict[str, str]:
    """Column expressions of a month billed now, ``period`` being its ``YYYYMM``, over the
    aliases ``c`` (connection), ``p`` (plan), ``u`` (customer) and ``b`` (billing)."""
    covered = f"{period} <= b.opening_through"
    off = "(c.status = 'suspended' OR u.archived_at IS NOT NULL)"
    return {
        "state": f"CASE WHEN {covered} THEN 'billed' WHEN {off} THEN 'waived' ELSE 'billed' END",
        "plan": "c.plan",
        "plan_name": "p.name",
        "amount": f"CASE WHEN {covered} THEN p.monthly_price WHEN {off} THEN 0 "
        "ELSE p.monthly_price END",
        "paid": f"CASE WHEN {covered} THEN p.monthly_price ELSE 0 END",
        "opening": f"({covered})",
    }


_JOINS = (
    "connections c JOIN plans p ON p.id = c.plan JOIN customers u ON u.id = c.customer "
    "JOIN billing_connections b ON b.connection = c.id"
)


async def _bill_scheduled(through: int, now: dt.datetime, scope: Scope) -> int:
    """Bill the rows that versions before 2026-12 made ahead as ``scheduled``: a box keeps
    them until their months come."""
    year, month = rules.split(through)
    # Usually there are none: one read of the scheduled months' partial index says so, where
    # the update below would walk the slice's connections (15 ms a slice at 100,000).
    if not await sql.rows(
        f"SELECT 1 AS x FROM billing_charges{sql.scheduled_index()} WHERE state = 'scheduled' "
        "AND (year < {} OR (year = {} AND month <= {})) LIMIT 1",
        year,
        year,
        month,
    ):
        return 0
    where, args = scope.where("c.customer = {}", "c.id", "billing_charges.connection")
    columns = _billed_columns("(billing_charges.year * 100 + billing_charges.month)")
    return await sql.execute_count(
        "UPDATE billing_charges SET "
        + ", ".join(f"{name} = {value}" for name, value in columns.items())
        + f", billed_at = {{}} FROM {_JOINS} "
        "WHERE billing_charges.connection = c.id AND billing_charges.state = 'scheduled' "
        "AND (billing_charges.year < {} OR (billing_charges.year = {} "
        "AND billing_charges.month <= {}))" + where,
        now,
        year,
        year,
        month,
        *args,
    )


def _last_billed(connection: str = "c.id") -> str:
    """The period of a connection's last month with a row (NULL when none): one step back
    along the (connection, year, month) index."""
    return (
        "(SELECT x.year * 100 + x.month FROM billing_charges x "
        f"WHERE x.connection = {connection} ORDER BY x.year DESC, x.month DESC LIMIT 1)"
    )


def _lacking(through: int) -> tuple[str, list[Any]]:
    """``AND ...``: the connection ``c`` is billable by ``through`` and has no row for it.
    Months are billed oldest first and all at once, so its last row says so.

    (Stated through the connection's last row rather than "no row for year Y, month M": with
    both of those constants, PostgreSQL without fresh statistics, as in a new central's first
    run, probed the (year, month) index and filtered on the connection, reading every row of
    the month for each connection.)"""
    return (
        f" AND {sql.period_of('c.registered_on')} <= {{}} AND coalesce({_last_billed()}, 0) < {{}}",
        [through, through],
    )


async def _bill_missing(through: int, now: dt.datetime, scope: Scope) -> int:
    """Make the rows of the months up to ``through`` that a connection lacks, billed.

    Usually that is one month (the one just begun) for every connection; after the box was
    off, or for a new connection, every month since the last one billed (or since
    registration). Each month's row has an id every node derives alike (connection and
    month), so when a box and central both bill it they hold the same row."""
    where, args = scope.where("c.customer = {}", "c.id", "b.connection")
    lacking, lacking_args = _lacking(through)
    registered = sql.period_of("c.registered_on")
    after_last = "CASE WHEN l.last % 100 = 12 THEN l.last + 89 ELSE l.last + 1 END"
    found = await sql.rows(
        "SELECT min(CASE WHEN l.last IS NULL THEN l.registered "
        f"ELSE {sql.greatest('l.registered', after_last)} END) AS start "
        f"FROM (SELECT {registered} AS registered, {_last_billed()} AS last "
        "FROM billing_connections b JOIN connections c ON c.id = b.connection WHERE 1 = 1"
        + lacking
        + where
        + ") l",
        *lacking_args,
        *args,
    )
    if not found or found[0]["start"] is None:
        return 0
    start = min(int(found[0]["start"]), through)
    made = 0
    for year in range(start // 100, through // 100 + 1):
        # The year is an integer made here, written into the text so it can appear in every
        # column expression without a parameter for each.
        period = f"({int(year)} * 100 + m.month)"
        columns = _billed_columns(period)
        first = start % 100 if year == start // 100 else 1
        last_month = through % 100 if year == through // 100 else 12
        made += await sql.execute_count(
            "INSERT INTO billing_charges (id, customer, connection, service, year, month, "
            + ", ".join(columns)
            + ", billed_at, created_at) "
            f"SELECT {sql.charge_id('c.id', period)}, c.customer, c.id, c.service, {int(year)}, "
            "m.month, "
            + ", ".join(columns.values())
            + f", {{}}, {{}} FROM {_JOINS} CROSS JOIN {sql.months_table(first, last_month)} m "
            # The months run up to ``through``, so "after the last row" is all of "lacking".
            f"WHERE {period} >= {registered} AND {period} > coalesce({_last_billed()}, 0)" + where,
            now,
            now,
            *args,
        )
    return made


async def _customer_up_to_date(customer_id: Any, year: int, through: int) -> bool:
    """True when catch-up has nothing to do for one customer: every connection started with
    its grid open up to ``year``, and every month up to ``through`` (a period) billed.

    One indexed read; the writes of a catch-up take several statements to find nothing to do,
    and every payment asks (the worker's monthly billing has usually run already)."""
    year_, month = rules.split(through)
    lacking, lacking_args = _lacking(through)
    rows = await sql.rows(
        "SELECT EXISTS (SELECT 1 FROM connections c "
        "LEFT JOIN billing_connections b ON b.connection = c.id "
        "WHERE c.customer = {} AND (b.connection IS NULL OR b.rows_through < {})) AS behind, "
        "EXISTS (SELECT 1 FROM connections c JOIN billing_charges x ON x.connection = c.id "
        "WHERE c.customer = {} AND x.state = 'scheduled' "
        "AND (x.year < {} OR (x.year = {} AND x.month <= {}))) AS scheduled, "
        "EXISTS (SELECT 1 FROM connections c WHERE c.customer = {}" + lacking + ") AS unbilled",
        customer_id,
        year,
        customer_id,
        year_,
        year_,
        month,
        customer_id,
        *lacking_args,
    )
    return bool(rows) and not any(rows[0].values())


async def _office_work(year: int, through: int) -> dict[str, bool]:
    """What the office-wide jobs have to do: connections waiting for billing to start
    (``unstarted``), grids to open up to ``year`` (``behind``), months up to ``through`` to
    bill (``scheduled``, ``unbilled``). Reads that stop at the first row found, instead of a
    pass over every slice; the last one steps back to each connection's last month along the
    (connection, year, month) index (0.1-0.2 s at 100,000 connections here)."""
    year_, month = rules.split(through)
    lacking, lacking_args = _lacking(through)
    rows = await sql.rows(
        "SELECT EXISTS (SELECT 1 FROM connections c WHERE NOT EXISTS "
        "(SELECT 1 FROM billing_connections b WHERE b.connection = c.id)) AS unstarted, "
        "EXISTS (SELECT 1 FROM billing_connections WHERE rows_through < {}) AS behind, "
        f"EXISTS (SELECT 1 FROM billing_charges x{sql.scheduled_index()} "
        "WHERE x.state = 'scheduled' "
        "AND (x.year < {} OR (x.year = {} AND x.month <= {}))) AS scheduled, "
        "EXISTS (SELECT 1 FROM connections c WHERE 1 = 1" + lacking + ") AS unbilled",
        year,
        year_,
        year_,
        month,
        *lacking_args,
    )
    return {k: bool(v) for k, v in rows[0].items()}


async def catch_up(settings: Settings, *, year: int, customer_id: Any) -> dict[str, int]:
    """One customer's grid opened up to ``year`` and billed up to the current month, inside
    the caller's transaction (the lock is taken here)."""
    today = clock.today(settings.tz)
    year = max(year, today.year)
    through = rules.period_of(today)
    await sql.lock_billing(settings.office_code)
    if await _customer_up_to_date(customer_id, year, through):
        return {"connections_started": 0, "years_opened": 0, "billed": 0}
    return await _catch_up(Scope(customer=customer_id), year=year, through=through)


async def _catch_up(
    scope: Scope, *, year: int, through: int, office_wide: bool = False
) -> dict[str, int]:
    now = clock.now()
    started = await _initialise(now, scope)
    if office_wide:
        # Every node opens the year on its own grids with this same rule (central and each
        # box run the job): not logged, so the new year sends nothing.
        async with unlogged():
            opened = await _open_years(year, scope)
    else:
        opened = await _open_years(year, scope)
    billed = await _bill(through, now, scope)
    return {"connections_started": started, "years_opened": opened, **billed}


async def _by_slices(
    settings: Settings, *, year: int, through: int, size: int | None = None
) -> Counter[str]:
    """:func:`_catch_up` over every connection, one write transaction per slice."""
    totals: Counter[str] = Counter()
    work = await _office_work(year, through)
    if not any(work.values()):
        return totals
    if not (work["unstarted"] or work["scheduled"] or work["unbilled"]):
        # Only grids to open (the year updater on 1 January, after the month's billing, or a
        # year opened ahead): one narrow update of every connection's bookkeeping, a fraction
        # of a second of holding the lock here, instead of a pass over the slices.
        async with write_transaction():
            await sql.lock_billing(settings.office_code)
            async with unlogged():
                totals["years_opened"] = await _open_years(year)
        return totals
    parts = await slices(size or SLICE_CONNECTIONS)
    for index, scope in enumerate(parts):
        began = time.monotonic()
        async with write_transaction():
            await sql.lock_billing(settings.office_code)
            await sql.bulk_cache()
            done = await _catch_up(scope, year=year, through=through, office_wide=True)
        totals.update(done)
        if any(done.values()) and index < len(parts) - 1:
            await _between_slices(time.monotonic() - began)
    return totals


async def _between_slices(held_s: float) -> None:
    """Let a writer that waited for the lock in (SQLite; PostgreSQL's row locks need no pause).

    The pause is as long as the slice held the lock, up to ``SLICE_PAUSE_S``: the job holds
    the lock at most half the time, and a slice of a few milliseconds (opening a year) is not
    followed by a tenth of a second of waiting."""
    if sql.sqlite():
        await asyncio.sleep(min(SLICE_PAUSE_S, held_s))


async def ensure_year(
    settings: Settings, year: int | None = None, *, slice_size: int | None = None
) -> dict[str, Any]:
    """The year updater: ``year`` (default: the office's current year) and every year missed
    before it opened on every connection's grid; then every month up to today billed.

    Idempotent, slice by slice: a run cut off midway leaves whole slices done, and the next run
    (or a second one) finds only what is left.
    """
    today = clock.today(settings.tz)
    year = year or today.year
    started = time.monotonic()
    totals = await _by_slices(
        settings, year=max(year, today.year), through=rules.period_of(today), size=slice_size
    )
    summary = {
        "year": year,
        "connections_started": totals["connections_started"],
        "years_opened": totals["years_opened"],
        "billed": totals["billed"],
        "seconds": round(time.monotonic() - started, 2),
    }
    log.info("billing year update", extra=summary)
    return summary


async def bill_month(
    settings: Settings,
    year: int | None = None,
    month: int | None = None,
    *,
    slice_size: int | None = None,
):
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
    totals = await _by_slices(settings, year=max(year, today.year), through=target, size=slice_size)
    summary = {
        "period": f"{target // 100}-{target % 100:02d}",
        "connections_started": totals["connections_started"],
        "years_opened": totals["years_opened"],
        "billed": totals["billed"],
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
