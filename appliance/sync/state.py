"""This node's sync state, the sync-apply switch of the capture triggers, and the clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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


# The transactions (by id, while inside) in ``applying()``: a nested one in the same transaction
# (billing's unlogged year opening, run by a caller that applies with the triggers off) must
# not switch them back on as it ends. Keyed by transaction, as the switch itself is.
_applying_in: set[int] = set()


@asynccontextmanager
async def applying() -> AsyncIterator[None]:
    """Rows written inside are sync's own (applied from another node), not local changes.
    Must run inside a transaction; a rollback also undoes the switch. Nested in the same
    transaction, the outer one decides: the inner one changes nothing."""
    transaction = db.engine().current_transaction.get()
    key = id(transaction) if transaction is not None else None
    if key is not None and key in _applying_in:
        yield
        return
    await set_applying(True)
    if key is not None:
        _applying_in.add(key)
    try:
        yield
    finally:
        if key is not None:
            _applying_in.discard(key)
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
