"""Everything the office has recorded, to prove a refused request changed nothing."""

from __future__ import annotations

from typing import Any

from appliance import db

# Bookkeeping a refused request may legitimately touch: sessions (last seen), the audit trail
# and the counters that rate-limit logins and one-time codes.
IGNORED = frozenset(
    {"sessions", "login_failures", "audit_log", "otp_events", "job_runs", "job_locks"}
)


async def snapshot() -> dict[str, list[dict[str, Any]]]:
    from appliance.tables import ALL_TABLES

    tables = [t for t in ALL_TABLES if t._meta.tablename not in IGNORED]
    result = {}
    async with db.engine().transaction():
        for table in tables:
            rows = await table.select()
            result[table._meta.tablename] = sorted(rows, key=repr)
    return result


def changes(before: dict[str, list[dict]], after: dict[str, list[dict]]) -> list[str]:
    """Names of the tables whose rows differ."""
    return [name for name in before if before[name] != after.get(name)]
