"""Billing: what a customer owes, the month grid, payments and invoices.

The functions other features call live here: the jobs (:func:`ensure_year`, :func:`bill_month`),
reminders and reports (:func:`dues`, :func:`monthly_ledger`), dashboards (:func:`month_figures`,
:func:`account`), invoices (:func:`invoice_view`), and the writes re-exported from
:mod:`appliance.billing.payments` and :mod:`appliance.billing.charges`.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import defaultdict
from typing import Any

from appliance import clock
from appliance.billing import rules
from appliance.billing.charges import bill_month, ensure_year, reconnect, sync_customer
from appliance.billing.payments import (
    credit_of,
    open_charges,
    record_payment,
    reverse_payment,
)
from appliance.billing.tables import Charge, Payment
from appliance.customers.tables import Connection, Customer
from appliance.errors import NotFound
from appliance.i18n import gettext as _
from appliance.settings import Settings

__all__ = [
    "account",
    "bill_month",
    "customer_year",
    "dues",
    "ensure_year",
    "get_payment",
    "invoice_view",
    "list_payments",
    "month_figures",
    "monthly_ledger",
    "reconnect",
    "record_payment",
    "reverse_payment",
    "sync_customer",
    "year_grid",
    "years_of",
]

CHUNK = 500


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return json.loads(value or "{}")
    return dict(value or {})


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)] or [[]]


# -- what is owed ------------------------------------------------------------------------------


async def account(customer_id: Any) -> dict[str, Any]:
    """A customer's due: open months (oldest first), credit, and the due per service.

    ``due`` is every unpaid or partly paid month, all years, minus unused credit.
    """
    cid = _uuid(customer_id)
    rows = await open_charges(cid)
    credit = await credit_of(cid)
    by_service: dict[str, int] = defaultdict(int)
    pending = []
    for r in rows:
        left = r["amount"] - r["paid"]
        by_service[r["service"]] += left
        pending.append({**r, "open": left})
    open_total = sum(by_service.values())
    return {
        "customer_id": cid,
        "due": max(open_total - credit, 0),
        "open": open_total,
        "credit": credit,
        "by_service": dict(by_service),
        "pending": pending,
        "pending_months": sorted({(r["year"], r["month"]) for r in rows}),
    }


async def dues(customer_ids: list[Any] | None = None, service: str | None = None) -> list[dict]:
    """Customers who owe something (removed customers left out), one row each.

    Each row: ``customer_id``, ``service`` (the filter asked for, None for both),
    ``amount_due`` (open months of that service minus unused credit), ``pending`` (sorted
    ``(year, month)`` pairs), ``by_service`` ({service: open amount}) and ``credit``.
    """
    query = (
        "SELECT c.customer, c.service, c.year, c.month, c.amount - c.paid AS left_over "
        "FROM billing_charges c JOIN customers u ON u.id = c.customer "
        "WHERE c.state = 'billed' AND c.paid < c.amount AND u.archived_at IS NULL"
    )
    base_args: list[Any] = []
    if service:
        query += " AND c.service = {}"
        base_args.append(service)
    rows: list[dict[str, Any]] = []
    ids = [_uuid(c) for c in customer_ids] if customer_ids is not None else None
    if ids == []:
        return []
    for chunk in _chunks(ids) if ids is not None else [None]:
        q, args = query, list(base_args)
        if chunk is not None:
            q += " AND c.customer IN (" + ", ".join("{}" for _ in chunk) + ")"
            args += chunk
        rows += await Charge.raw(q, *args)
    credits = {
        r["customer"]: r["credit"]
        for r in await Charge.raw("SELECT customer, credit FROM billing_accounts WHERE credit <> 0")
    }
    grouped: dict[Any, dict[str, Any]] = {}
    for r in rows:
        entry = grouped.setdefault(
            r["customer"], {"by_service": defaultdict(int), "pending": set()}
        )
        entry["by_service"][r["service"]] += int(r["left_over"])
        entry["pending"].add((r["year"], r["month"]))
    result = []
    for customer, entry in grouped.items():
        open_total = sum(entry["by_service"].values())
        credit = credits.get(customer, 0)
        due = open_total - min(credit, open_total)
        if due <= 0:
            continue
        result.append(
            {
                "customer_id": customer,
                "service": service,
                "amount_due": due,
                "pending": sorted(entry["pending"]),
                "by_service": dict(entry["by_service"]),
                "credit": credit,
            }
        )
    result.sort(key=lambda r: (-r["amount_due"], str(r["customer_id"])))
    return result


async def monthly_ledger(
    year: int,
    *,
    month: int | None = None,
    customer_ids: list[Any] | None = None,
    service: str | None = None,
) -> list[dict[str, Any]]:
    """Charged and paid per customer, service and month of ``year`` (for reports).

    Rows: ``customer_id``, ``service``, ``year``, ``month``, ``state`` (billed or waived; a
    month not billed yet has no row, except the ``scheduled`` ones an earlier version made
    ahead), ``charged`` (0 unless billed), ``paid``, ``plan_name``.
    """
    query = (
        "SELECT customer, service, year, month, state, amount, paid, plan_name "
        "FROM billing_charges WHERE year = {}"
    )
    base: list[Any] = [year]
    if month is not None:
        query += " AND month = {}"
        base.append(month)
    if service:
        query += " AND service = {}"
        base.append(service)
    rows: list[dict[str, Any]] = []
    ids = [_uuid(c) for c in customer_ids] if customer_ids is not None else None
    for chunk in _chunks(ids) if ids is not None else [None]:
        q, args = query, list(base)
        if chunk is not None:
            if not chunk:
                continue
            q += " AND customer IN (" + ", ".join("{}" for _ in chunk) + ")"
            args += chunk
        rows += await Charge.raw(q + " ORDER BY customer, service, month", *args)
    return [
        {
            "customer_id": r["customer"],
            "service": r["service"],
            "year": r["year"],
            "month": r["month"],
            "state": r["state"],
            "charged": r["amount"] if r["state"] == "billed" else 0,
            "paid": r["paid"],
            "plan_name": r["plan_name"],
        }
        for r in rows
    ]


async def month_figures(
    settings: Settings, day: dt.date | None = None, *, office: str = ""
) -> dict[str, Any]:
    """Money received (from the ledger, reversals left out) and still pending in the month
    of ``day`` (default today), per service; of one office's customers when ``office`` is
    given (central holds every office's)."""
    day = day or clock.today(settings.tz)
    scope = " AND c.customer IN (SELECT id FROM customers WHERE office = {})" if office else ""
    extra = [office] if office else []
    first = day.replace(day=1)
    last = rules.month_end(rules.period_of(day))
    received = {
        r["service"]: int(r["n"] or 0)
        for r in await Charge.raw(
            "SELECT c.service, SUM(a.amount) AS n FROM billing_payments p "  # noqa: S608
            "JOIN billing_allocations a ON a.payment = p.id "
            "JOIN billing_charges c ON c.id = a.charge "
            "WHERE p.paid_on >= {} AND p.paid_on <= {} AND NOT EXISTS "
            "(SELECT 1 FROM billing_reversals r WHERE r.payment = p.id)"
            + scope
            + " GROUP BY c.service",
            first,
            last,
            *extra,
        )
    }
    pending = {
        r["service"]: int(r["n"] or 0)
        for r in await Charge.raw(
            "SELECT c.service, SUM(c.amount - c.paid) AS n FROM billing_charges c "  # noqa: S608
            "JOIN customers u ON u.id = c.customer WHERE c.state = 'billed' "
            "AND c.paid < c.amount AND c.year = {} AND c.month = {} "
            "AND u.archived_at IS NULL" + scope + " GROUP BY c.service",
            day.year,
            day.month,
            *extra,
        )
    }
    return {"year": day.year, "month": day.month, "received": received, "pending": pending}


# -- the grid ----------------------------------------------------------------------------------


def cell_state(row: dict[str, Any] | None) -> str:
    """none, scheduled (not billed yet), waived (not charged), unpaid, partial or paid."""
    if row is None:
        return "none"
    if row["state"] != "billed":
        return row["state"]
    if row["paid"] >= row["amount"]:
        return "paid"
    return "partial" if row["paid"] > 0 else "unpaid"


async def year_grid(customer_id: Any, year: int) -> dict[str, list[dict[str, Any]]]:
    """Twelve cells per service the customer has, January to December.

    A month has a row once it is billed; before that it shows as *not billed yet* from the
    connection's registration on, in every year the year updater has opened for it."""
    cid = _uuid(customer_id)
    conns = await Connection.raw(
        "SELECT c.id, c.service, c.registered_on, p.name, p.monthly_price, b.rows_through "
        "FROM connections c JOIN plans p ON p.id = c.plan "
        "LEFT JOIN billing_connections b ON b.connection = c.id WHERE c.customer = {}",
        cid,
    )
    by_service = {r["service"]: r for r in conns}
    # Read through the connections: (connection, year, month) is indexed, the customer is not.
    rows = (
        await Charge.select(
            Charge.service,
            Charge.month,
            Charge.state,
            Charge.amount,
            Charge.paid,
            Charge.plan_name,
            Charge.opening,
        ).where(Charge.connection.is_in([r["id"] for r in conns]) & (Charge.year == year))
        if conns
        else []
    )
    by_key = {(r["service"], r["month"]): r for r in rows}
    grid = {}
    for service in ("cable", "broadband"):
        conn = by_service.get(service)
        if conn is None:
            continue
        cells = []
        for month in range(1, 13):
            row = by_key.get((service, month)) or _not_billed_yet(conn, year, month)
            cells.append(
                {
                    "month": month,
                    "state": cell_state(row),
                    "amount": row["amount"] if row else 0,
                    "paid": row["paid"] if row else 0,
                    "plan_name": row["plan_name"] if row else "",
                    "opening": bool(row["opening"]) if row else False,
                }
            )
        grid[service] = cells
    return grid


def _as_date(value: Any) -> dt.date:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


def _not_billed_yet(conn: dict[str, Any], year: int, month: int) -> dict[str, Any] | None:
    """The cell of a month without a row: not billed yet (at the plan's price today) when the
    connection is registered by then and its grid is open for the year; otherwise none."""
    registered = _as_date(conn["registered_on"])
    opened = conn["rows_through"] or 0
    if year > opened or rules.period(year, month) < rules.period_of(registered):
        return None
    return {
        "state": "scheduled",
        "amount": conn["monthly_price"],
        "paid": 0,
        "plan_name": conn["name"],
        "opening": False,
    }


async def years_of(customer_id: Any, *, settings: Settings) -> list[int]:
    """Years that can be looked at, newest first: from the first billed one to this one."""
    this_year = clock.today(settings.tz).year
    rows = await Charge.raw(
        "SELECT min(year) AS first FROM billing_charges WHERE connection IN "
        "(SELECT id FROM connections WHERE customer = {})",
        _uuid(customer_id),
    )
    first = rows[0]["first"] if rows and rows[0]["first"] is not None else this_year
    first = min(int(first), this_year)
    return list(range(this_year, first - 1, -1))


async def customer_year(customer_id: Any, year: int, *, settings: Settings) -> dict[str, Any]:
    """One customer's payment details for ``year``: what they owe now (all years), the month
    grid per service, and the year's payments (each one an invoice), with the years to pick.

    A year outside the customer's years is still answered (an empty grid), so a typed address
    never fails.
    """
    return {
        "year": year,
        "years": await years_of(customer_id, settings=settings),
        "account": await account(customer_id),
        "grid": await year_grid(customer_id, year),
        "payments": await list_payments(customer_id, year=year),
    }


# -- payments and invoices ---------------------------------------------------------------------


async def _lines(payment_ids: list[Any]) -> dict[Any, list[dict[str, Any]]]:
    result: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for chunk in _chunks(payment_ids):
        if not chunk:
            continue
        rows = await Charge.raw(
            "SELECT a.payment, c.service, c.plan_name, c.year, c.month, a.amount "
            "FROM billing_allocations a JOIN billing_charges c ON c.id = a.charge "
            "WHERE a.payment IN (" + ", ".join("{}" for _ in chunk) + ") "
            "ORDER BY c.year, c.month, c.service DESC",
            *chunk,
        )
        for r in rows:
            result[r["payment"]].append(
                {
                    "service": r["service"],
                    "plan_name": r["plan_name"],
                    "year": r["year"],
                    "month": r["month"],
                    "amount": r["amount"],
                }
            )
    return result


_PAYMENT_COLUMNS = (
    "p.id, p.number, p.customer, p.amount, p.mode, p.reference, p.target, p.received_by_name, "
    "p.actor_role, p.paid_on, p.created_at, p.credit_after, p.due_after, p.snapshot, "
    "r.reason AS reversal_reason, r.created_at AS reversed_at, "
    "r.reversed_by_name AS reversed_by_name"
)


def payment_view(row: dict[str, Any], lines: list[dict[str, Any]]) -> dict[str, Any]:
    """A payment as the API and pages show it, from its ``billing_payments`` row (with the
    reversal's columns, when read with :data:`_PAYMENT_COLUMNS`) and its lines."""
    snapshot = _json(row["snapshot"])
    created = row["created_at"]
    if isinstance(created, str):
        created = dt.datetime.fromisoformat(created)
    if created.tzinfo is None:
        created = created.replace(tzinfo=dt.UTC)
    return {
        "id": row["id"],
        "number": row["number"],
        "customer_id": row["customer"],
        "issued_at": created,
        "paid_on": row["paid_on"],
        "amount": row["amount"],
        "mode": row["mode"],
        "reference": row["reference"],
        "target": row["target"],
        "received_by": row["received_by_name"] or "online",
        "credit": row["credit_after"],
        "remaining_due": row["due_after"],
        "reversed": row.get("reversed_at") is not None,
        "reversal_reason": row.get("reversal_reason") or "",
        "reversed_at": row.get("reversed_at"),
        "reversed_by": row.get("reversed_by_name") or "",
        "lines": lines,
        "snapshot": snapshot,
    }


async def _payments(where: str, *args: Any) -> list[dict[str, Any]]:
    rows = await Payment.raw(
        f"SELECT {_PAYMENT_COLUMNS} FROM billing_payments p "  # noqa: S608 (constant text)
        "LEFT JOIN billing_reversals r ON r.payment = p.id WHERE " + where,
        *args,
    )
    lines = await _lines([r["id"] for r in rows])
    return [payment_view(r, lines.get(r["id"], [])) for r in rows]


async def get_payment(number: str) -> dict[str, Any]:
    found = await _payments("p.number = {}", str(number))
    if not found:
        raise NotFound(_("There is no invoice with this number."))
    return found[0]


async def list_payments(
    customer_id: Any, *, year: int | None = None, month: int | None = None
) -> list[dict[str, Any]]:
    """A customer's payments (reversed ones too, marked), oldest first, optionally of one
    year or one month (by the office day they were made)."""
    where = "p.customer = {}"
    args: list[Any] = [_uuid(customer_id)]
    if year is not None:
        first = dt.date(year, month or 1, 1)
        last = rules.month_end(rules.period(year, month or 12))
        where += " AND p.paid_on >= {} AND p.paid_on <= {}"
        args += [first, last]
    return await _payments(where + " ORDER BY p.created_at, p.number", *args)


async def invoice_view(number: str) -> dict[str, Any]:
    """Everything an invoice shows, as frozen when it was issued (the contract with
    :mod:`appliance.invoices`). Raises NotFound for an unknown number."""
    payment = await get_payment(number)
    snapshot = payment["snapshot"]
    customer = snapshot.get("customer")
    if not customer:
        # Rows written in bulk (the demo) carry no snapshot: print the customer as they are.
        rows = await Customer.select().where(Customer.id == payment["customer_id"])
        customer = rows[0] if rows else {}
    fields = ("crf", "name", "house", "area", "district", "state", "postal_code")
    office = snapshot.get("office") or {}
    return {
        "number": payment["number"],
        "issued_at": payment["issued_at"],
        "customer_id": payment["customer_id"],
        "office": {
            "code": office.get("code", payment["number"].split("-")[0]),
            "name": office.get("name", ""),
            "address": office.get("address", ""),
        },
        "customer": {
            **{key: customer.get(key, "") or "" for key in fields},
            "mobile": customer.get("mobile", "") or "",
            "email": customer.get("email", "") or "",
        },
        "lines": payment["lines"],
        "amount_paid": payment["amount"],
        "mode": payment["mode"],
        "reference": payment["reference"] if payment["mode"] == "online" else "",
        "received_by": payment["received_by"],
        "credit": payment["credit"],
        "remaining_due": payment["remaining_due"],
        "currency": snapshot.get("currency") or "",
        "reversed": payment["reversed"],
        "reversal_reason": payment["reversal_reason"],
    }


async def connections_of(customer_id: Any) -> dict[str, dict[str, Any]]:
    rows = await Connection.select(
        Connection.id,
        Connection.service,
        Connection.status,
        Connection.expires_on,
        Connection.plan.name.as_alias("plan_name"),
        Connection.plan.monthly_price.as_alias("plan_price"),
    ).where(Connection.customer == _uuid(customer_id))
    return {r["service"]: r for r in rows}
