"""The rows of a payment report, read from the billing ledger in batches.

A report lists the *billed* charges of one month (waived months charged nothing; scheduled ones
are not due yet): *paid* when the month is settled in full (``paid >= amount``), *unpaid*
otherwise, partly paid months included. Amounts are the charge's; the payments are those whose
allocations settled the charge, leaving out reversed ones. In unpaid reports, the amount due
and the months pending count every open month of the connection up to the report's month.

Rows come in CRF order, then service, in batches read by keyset (``(crf, service) > last``),
so a batch costs the same at the start and at the end of a 20,000-row report and only one
batch is held at a time.
"""

# SQL text here is assembled from constants and placeholders only; values travel as parameters.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

from appliance.billing.tables import Charge
from appliance.reports.columns import ReportFilter

BATCH = 2000


def _marks(values: list[Any]) -> str:
    return ", ".join("{}" for _ in values)


def _where(report: ReportFilter) -> tuple[str, list[Any]]:
    services = list(report.services)
    settled = "ch.paid < ch.amount" if report.unpaid else "ch.paid >= ch.amount"
    where = (
        f"ch.year = {{}} AND ch.month = {{}} AND ch.state = 'billed' AND {settled} "
        f"AND ch.service IN ({_marks(services)})"
    )
    args: list[Any] = [report.year, report.month, *services]
    if report.office:
        where += " AND ch.customer IN (SELECT id FROM customers WHERE office = {})"
        args.append(report.office)
    return where, args


async def count_rows(report: ReportFilter) -> int:
    where, args = _where(report)
    rows = await Charge.raw(f"SELECT COUNT(*) AS n FROM billing_charges ch WHERE {where}", *args)
    return int(rows[0]["n"]) if rows else 0


def _date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def _key(value: Any) -> str:
    return str(value)


async def _batch(report: ReportFilter, after: tuple[str, str] | None) -> list[dict[str, Any]]:
    where, args = _where(report)
    keyset = ""
    if after is not None:
        # Written so that the CRF index gives the start of the range.
        keyset = " AND u.crf >= {} AND (u.crf > {} OR c.service > {})"
        args += [after[0], after[0], after[1]]
    # CROSS JOIN keeps SQLite's loops in this order: customers in CRF order (the index gives
    # the ORDER BY, so LIMIT stops early), then their connections, then the month's charge by
    # billing's (connection, year, month) index. PostgreSQL plans it as inner joins.
    return await Charge.raw(
        "SELECT ch.id AS charge_id, ch.customer AS customer_id, ch.connection AS connection_id, "
        "ch.service, ch.plan_name, ch.amount, ch.paid, ch.opening, u.crf, u.name, u.house, "
        "u.area, u.mobile, u.email, c.status "
        "FROM customers u CROSS JOIN connections c CROSS JOIN billing_charges ch "
        "WHERE c.customer = u.id AND ch.connection = c.id "
        f"AND {where}{keyset} ORDER BY u.crf, c.service LIMIT {BATCH}",
        *args,
    )


async def _payments(charge_ids: list[Any]) -> dict[str, list[tuple[dt.date, str, str]]]:
    rows = await Charge.raw(
        "SELECT a.charge, p.paid_on, p.number, p.mode FROM billing_allocations a "
        "JOIN billing_payments p ON p.id = a.payment "
        f"WHERE a.charge IN ({_marks(charge_ids)}) "
        "AND NOT EXISTS (SELECT 1 FROM billing_reversals r WHERE r.payment = p.id) "
        "ORDER BY p.paid_on, p.number",
        *charge_ids,
    )
    result: dict[str, list[tuple[dt.date, str, str]]] = {}
    for r in rows:
        result.setdefault(_key(r["charge"]), []).append(
            (_date(r["paid_on"]), r["number"], r["mode"])
        )
    return result


async def _dues(report: ReportFilter, customer_ids: list[Any]) -> dict[str, tuple[int, int]]:
    """(amount due, months pending) per connection, over open months up to the report's."""
    services = list(report.services)
    rows = await Charge.raw(
        "SELECT ch.connection, SUM(ch.amount - ch.paid) AS due, COUNT(*) AS months "
        f"FROM billing_charges ch WHERE ch.customer IN ({_marks(customer_ids)}) "
        "AND ch.state = 'billed' AND ch.paid < ch.amount "
        f"AND ch.service IN ({_marks(services)}) "
        "AND (ch.year < {} OR (ch.year = {} AND ch.month <= {})) "
        "GROUP BY ch.connection",
        *customer_ids,
        *services,
        report.year,
        report.year,
        report.month,
    )
    return {_key(r["connection"]): (int(r["due"]), int(r["months"])) for r in rows}


def _uuid(value: Any) -> Any:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


async def iter_rows(report: ReportFilter) -> AsyncIterator[list[dict[str, Any]]]:
    """The report's rows, a batch (a list of row dicts, see :mod:`.columns`) at a time."""
    after: tuple[str, str] | None = None
    while True:
        batch = await _batch(report, after)
        if not batch:
            return
        payments = await _payments([_uuid(r["charge_id"]) for r in batch])
        dues: dict[str, tuple[int, int]] = {}
        if report.unpaid:
            customers = {_key(r["customer_id"]): _uuid(r["customer_id"]) for r in batch}
            dues = await _dues(report, list(customers.values()))
        rows = []
        for r in batch:
            row = {
                "service": r["service"],
                "crf": r["crf"],
                "name": r["name"],
                "house": r["house"],
                "area": r["area"],
                "mobile": r["mobile"],
                "email": r["email"],
                "status": r["status"],
                "plan": r["plan_name"],
                "charged": int(r["amount"]),
                "paid": int(r["paid"]),
                "payments": payments.get(_key(r["charge_id"]), []),
                "opening": bool(r["opening"]),
            }
            if report.unpaid:
                row["due"], row["months_pending"] = dues.get(
                    _key(r["connection_id"]), (row["charged"] - row["paid"], 1)
                )
            rows.append(row)
        yield rows
        if len(batch) < BATCH:
            return
        after = (batch[-1]["crf"], batch[-1]["service"])
