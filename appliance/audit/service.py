"""The audit log: every change to customers, connections, plans and accounts."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

from appliance.audit.tables import AuditEntry


def _plain(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    return value


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """Fields whose value differs, as ``{field: [old, new]}``."""
    return {
        key: [_plain(before.get(key)), _plain(value)]
        for key, value in after.items()
        if _plain(before.get(key)) != _plain(value)
    }


async def record(
    *,
    actor: Any | None,
    entity: str,
    entity_id: Any,
    action: str,
    changes: dict[str, Any] | None = None,
) -> None:
    """Add an entry (inside the caller's transaction, so it commits with the change)."""
    actor_id = getattr(actor, "id", None)
    await AuditEntry(
        actor_id=actor_id,
        actor=getattr(actor, "display_name", "") if actor else "system",
        entity=entity,
        entity_id=entity_id,
        action=action,
        changes={k: _plain(v) for k, v in (changes or {}).items()},
    ).save()


async def history(entity: str, entity_id: Any, *, limit: int = 50) -> list[dict[str, Any]]:
    return (
        await AuditEntry.select()
        .where((AuditEntry.entity == entity) & (AuditEntry.entity_id == entity_id))
        .order_by(AuditEntry.at, ascending=False)
        .limit(limit)
    )
