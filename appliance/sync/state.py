"""This node's sync state, the sync-apply switch of the capture triggers, and the clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from appliance import clock, db
from appliance.sync import hlc
from appliance.sync.tables import LOCAL, SyncState

SCHEMA_VERSION = 1
ACCEPTED_VERSIONS = (SCHEMA_VERSION - 1, SCHEMA_VERSION)


def now_ms() -> int:
    """This node's wall clock in ms, through :mod:`appliance.clock` (so tests can skew it)."""
    return int(clock.now().timestamp() * 1000)


async def get_state() -> dict[str, Any]:
    rows = await SyncState.select().where(SyncState.key == LOCAL)
    return rows[0]


async def update_state(**values: Any) -> None:
    await SyncState.update({getattr(SyncState, k): v for k, v in values.items()}).where(
        SyncState.key == LOCAL
    )


async def set_applying(on: bool) -> None:
    """Inside the current transaction: stop (or resume) logging changes as local ones."""
    if db.is_sqlite():
        await SyncState.raw(
            "UPDATE sync_state SET applying = {} WHERE key = 'local'", 1 if on else 0
        )
    else:
        await SyncState.raw(f"SET LOCAL ctvms.sync_applying = '{'on' if on else 'off'}'")


# True inside ``applying()`` in this task: an inner one (billing's unlogged year opening, run
# by a caller that applies with the triggers off) must not switch them back on as it ends.
_inside: ContextVar[bool] = ContextVar("ctvms_sync_applying", default=False)


@asynccontextmanager
async def applying() -> AsyncIterator[None]:
    """Rows written inside are sync's own (applied from another node), not local changes.
    Must run inside a transaction; a rollback also undoes the switch. Nested, the outer one
    decides: the inner one changes nothing."""
    if _inside.get():
        yield
        return
    await set_applying(True)
    token = _inside.set(True)
    try:
        yield
    finally:
        _inside.reset(token)
    await set_applying(False)


@asynccontextmanager
async def unlogged() -> AsyncIterator[None]:
    """Rows written inside hold values every node derives for itself with the same rule (the
    status updater's statuses follow from each connection's expiry and the day): not logged,
    so not sent, and every node pays only for its own run. Must run inside a transaction."""
    async with applying():
        yield


async def receive_stamp(remote: int, *, offset_ms: int = 0) -> bool:
    """Move this node's HLC past a remote stamp; True when the stamp was too far ahead.

    ``offset_ms`` corrects this node's wall clock before judging "too far ahead": a box whose
    clock is days behind passes central's measured offset, so central's (and the other boxes')
    stamps are still merged and the box's next edits come after them."""
    state = await get_state()
    merged = hlc.receive(state["hlc"], remote, now_ms() + int(offset_ms))
    await SyncState.raw(
        "UPDATE sync_state SET hlc = {} WHERE key = 'local' AND hlc < {}",
        merged.stamp,
        merged.stamp,
    )
    return merged.future


async def pending_count() -> int:
    state = await get_state()
    rows = await SyncState.raw(
        "SELECT count(*) AS n FROM sync_changes WHERE origin = 'local' AND sent = {} "
        "AND node_id = {}",
        False,
        state["node_id"],
    )
    return int(rows[0]["n"])
