"""The few SQL spellings that differ between SQLite and PostgreSQL, for set-based billing work.

Only values produced here (integers, hex digits) are ever pasted into SQL text; everything that
comes from outside travels as a query parameter.
"""

# SQL text here is assembled from constants and the dialect helpers only; values travel as
# parameters.
# ruff: noqa: S608

from __future__ import annotations

import calendar
import re
import zlib
from typing import Any

from appliance import clock, db
from appliance.billing.tables import Charge


def sqlite() -> bool:
    return db.is_sqlite()


def uuid7() -> str:
    """An expression giving a fresh UUIDv7 per row: this instant in milliseconds, then random
    bits, so rows made in bulk sort and index like the ones :func:`appliance.db.new_id` makes."""
    millis = int(clock.now().timestamp() * 1000)
    ts = f"{millis:012x}"
    assert re.fullmatch(r"[0-9a-f]{12}", ts)
    if sqlite():
        return (
            f"('{ts[:8]}-{ts[8:]}-7' || lower(substr(hex(randomblob(2)), 1, 3)) || '-' "
            "|| substr('89ab', 1 + (abs(random()) % 4), 1) "
            "|| lower(substr(hex(randomblob(2)), 1, 3)) || '-' || lower(hex(randomblob(6))))"
        )
    return (
        f"CAST('{ts[:8]}-{ts[8:]}-7' || substr(md5(random()::text), 1, 3) || '-' "
        "|| substr('89ab', 1 + floor(random() * 4)::int, 1) "
        "|| substr(md5(random()::text), 1, 3) || '-' "
        "|| substr(md5(random()::text), 1, 12) AS uuid)"
    )


def period_of(date_sql: str) -> str:
    """``YYYYMM`` integer of a date expression."""
    if sqlite():
        return f"CAST(strftime('%Y%m', {date_sql}) AS INTEGER)"
    return f"CAST(to_char({date_sql}, 'YYYYMM') AS INTEGER)"


def covered_through(date_sql: str) -> str:
    """Last month a paid-until date covers whole (see :func:`rules.covered_through`)."""
    if sqlite():
        return period_of(f"date({date_sql}, '+1 day', 'start of month', '-1 day')")
    return period_of(f"CAST(date_trunc('month', {date_sql} + 1) - interval '1 day' AS date)")


def month_before(date_sql: str) -> str:
    """Period of the month before the one a date falls in."""
    if sqlite():
        return period_of(f"date({date_sql}, 'start of month', '-1 day')")
    return period_of(f"CAST(date_trunc('month', {date_sql}) - interval '1 day' AS date)")


def month_end(period_sql: str) -> str:
    """Last day of a ``YYYYMM`` period, as a date."""
    if sqlite():
        return (
            f"date(printf('%04d-%02d-01', ({period_sql}) / 100, ({period_sql}) % 100), "
            "'+1 month', '-1 day')"
        )
    return (
        f"CAST(make_date(({period_sql}) / 100, ({period_sql}) % 100, 1) "
        "+ interval '1 month' - interval '1 day' AS date)"
    )


def greatest(a: str, b: str) -> str:
    return f"max({a}, {b})" if sqlite() else f"greatest({a}, {b})"


def scheduled_index() -> str:
    """Put after ``billing_charges`` in a query on ``state = 'scheduled'``: on SQLite, the
    partial index of the scheduled months, which its planner passes over for the report's
    (year, month) index and then reads every month of every year (75 ms at 1.2 million rows,
    for an index that is usually empty)."""
    return " INDEXED BY billing_charges_scheduled" if sqlite() else ""


def months_table(first: int = 1, last: int = 12) -> str:
    """A table of the months ``first`` to ``last`` (one column, ``month``)."""
    months = range(int(first), int(last) + 1)
    return "(" + " UNION ALL ".join(f"SELECT {m} AS month" for m in months) + ")"


def charge_id(connection_sql: str, period_sql: str) -> str:
    """The id of a connection's month (:func:`charge_id_of` in SQL)."""
    return db.derived_id_sql("charge", _month_start_ms(period_sql), connection_sql, period_sql)


def charge_id_of(connection_id: Any, period: int) -> Any:
    """The id every node gives the row of ``connection_id``'s month ``period`` (YYYYMM): its
    first 48 bits are the month's first instant (UTC), so a month's rows sit together."""
    year, month = divmod(int(period), 100)
    at_ms = calendar.timegm((year, month, 1, 0, 0, 0)) * 1000
    return db.derived_id("charge", at_ms, connection_id, int(period))


def _month_start_ms(period_sql: str) -> str:
    """Milliseconds since the epoch of a period's first day at 00:00 UTC."""
    if sqlite():
        return (
            f"(CAST(strftime('%s', printf('%04d-%02d-01', ({period_sql}) / 100, "
            f"({period_sql}) % 100)) AS INTEGER) * 1000)"
        )
    return (
        f"(CAST(extract(epoch FROM CAST(make_date(({period_sql}) / 100, ({period_sql}) % 100, 1)"
        " AS timestamp)) AS bigint) * 1000)"
    )


async def rows(sql: str, *args: Any) -> list[dict[str, Any]]:
    return await Charge.raw(sql, *args)


async def execute_count(sql: str, *args: Any) -> int:
    """Run an INSERT or UPDATE and return how many rows it touched (inside a transaction)."""
    if sqlite():
        await Charge.raw(sql, *args)
        result = await Charge.raw("SELECT changes() AS n")
    else:
        result = await Charge.raw(
            f"WITH w AS ({sql} RETURNING 1) SELECT count(*) AS n FROM w", *args
        )
    return int(result[0]["n"]) if result else 0


# Page cache of a connection doing set-based work over every connection (the office-wide billing
# slices): with SQLite's default of 2 MB, a slice writing many rows into billing_charges, its
# indexes and the sync change log reads the same index pages again and again. It was measured
# when a year's 1.2 million rows were made at once (128 -> 67 s); a month's billing (2,000 rows a
# slice) takes the same time with or without it (11.6 vs 12.0 s at 100,000 connections), the
# catch-up of a box that was off for months writes tens of thousands a slice. The connection
# closes with its transaction instead of going back to the engine's idle list, and the memory
# goes with it.
BULK_CACHE_KIB = 64 * 1024


async def bulk_cache() -> None:
    """Give the current transaction's connection a larger page cache (SQLite only)."""
    if sqlite():
        await Charge.raw(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
        db.ApplianceSQLiteEngine.close_after_transaction()


async def lock_billing(office_code: str) -> None:
    """Serialise billing writes of the office, inside the caller's transaction.

    SQLite needs nothing more: :func:`appliance.db.write_transaction` began IMMEDIATE and holds
    the only write lock. PostgreSQL takes a transaction-scoped advisory lock, so two payments
    for one customer (or two runs of the year updater) wait for each other instead of both
    reading the same due.
    """
    if sqlite():
        return
    key = zlib.crc32(f"ctvms-billing-{office_code}".encode())
    await Charge.raw("SELECT pg_advisory_xact_lock({})", key)
