"""The status updater: each connection's status follows from its expiry date and the office day.

Rules, with ``today`` the office's calendar day and ``expires_on`` the last day of paid service:

- ``expires_on`` today or later: **active**;
- expired 1 to 60 days ago: **inactive** (the grace period);
- expired more than 60 days ago: **suspended**.

A connection that was never paid (no expiry date) counts as paid up to the day before its
registration: it is active until its registration day if that lies ahead, inactive for the first
60 days after that and suspended after. So an unpaid new connection shows as owing from its first
night on, and the status is a pure function of (expiry, registration, today): running the updater
twice, or late after the box was off, gives the same result as running it on time.

The work is one set-based ``UPDATE`` (a ``CASE`` over the two boundary dates, computed here so
that SQLite and PostgreSQL read the same SQL) plus one ``SELECT`` counting what it will change.

The office-wide run is not logged for sync: every node (each box, central) runs it on the same
expiry dates and gets the same statuses, so sending 100,000 of them each night would be work for
nothing (about three quarters of the run went into logging them). A status set with a payment
(billing passes ``connection_ids``) is logged with the payment's other changes.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable
from typing import Any

from appliance import clock
from appliance.customers.tables import Connection
from appliance.db import write_transaction
from appliance.settings import Settings
from appliance.sync.state import unlogged

log = logging.getLogger(__name__)

GRACE_DAYS = 60
STATUSES = ("active", "inactive", "suspended")


def status_on(expires_on: dt.date | None, registered_on: dt.date, today: dt.date) -> str:
    """The rule for one connection, in Python (the SQL below must agree with it)."""
    paid_until = expires_on if expires_on is not None else registered_on - dt.timedelta(days=1)
    if paid_until >= today:
        return "active"
    if paid_until >= today - dt.timedelta(days=GRACE_DAYS):
        return "inactive"
    return "suspended"


def _case(today: dt.date) -> tuple[str, list[Any]]:
    """SQL expression of the new status, and its parameters."""
    last_inactive = today - dt.timedelta(days=GRACE_DAYS)
    # Registration R unpaid means paid up to R - 1: "R - 1 >= d" is "R > d".
    sql = (
        "CASE "
        "WHEN expires_on IS NOT NULL AND expires_on >= {} THEN 'active' "
        "WHEN expires_on IS NOT NULL AND expires_on >= {} THEN 'inactive' "
        "WHEN expires_on IS NOT NULL THEN 'suspended' "
        "WHEN registered_on > {} THEN 'active' "
        "WHEN registered_on > {} THEN 'inactive' "
        "ELSE 'suspended' END"
    )
    return sql, [today, last_inactive, today, last_inactive]


async def update_statuses(
    settings: Settings,
    *,
    today: dt.date | None = None,
    connection_ids: Iterable[Any] | None = None,
) -> dict[str, Any]:
    """Bring every connection's status (or only ``connection_ids``') in line with the rules.

    Returns how many connections became active, inactive and suspended. Billing can call this
    with the ids of the connections a payment touched, inside its own transaction.
    """
    today = today or clock.today(settings.tz)
    case, params = _case(today)
    where = f"status <> ({case})"
    where_params = list(params)
    if connection_ids is not None:
        ids = [i if isinstance(i, uuid.UUID) else uuid.UUID(str(i)) for i in connection_ids]
        if not ids:
            return {"today": today.isoformat(), "active": 0, "inactive": 0, "suspended": 0}
        where += " AND id IN (" + ", ".join("{}" for _ in ids) + ")"
        where_params += ids
    async with write_transaction():
        rows = await Connection.raw(
            f"SELECT {case} AS new_status, COUNT(*) AS n FROM connections "  # noqa: S608
            f"WHERE {where} GROUP BY new_status",
            *params,
            *where_params,
        )
        counts = {s: 0 for s in STATUSES}
        for row in rows:
            counts[row["new_status"]] = int(row["n"])
        if any(counts.values()):
            update = Connection.raw(
                f"UPDATE connections SET status = {case}, updated_at = {{}} "  # noqa: S608
                f"WHERE {where}",
                *params,
                clock.now(),
                *where_params,
            )
            if connection_ids is None:
                async with unlogged():
                    await update
            else:
                await update
    summary = {"today": today.isoformat(), **counts}
    if connection_ids is None:
        log.info("connection statuses updated", extra=summary)
    return summary
