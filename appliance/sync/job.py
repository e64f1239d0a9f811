"""The ``sync`` scheduled job: a box's sync round in the background.

The worker runs it every five minutes and right after a payment (:func:`sync_soon`); the jobs
registry's lock keeps rounds from overlapping. A round that cannot reach central is not a crash:
:func:`appliance.sync.client.sync_once` records the failure (the admin sees it) and the next
rounds back off (1, 2, 4 ... up to 60 minutes), so the job answers a summary with a ``warning``
and the time it will try again. A box that is not enrolled, and central itself, do nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from appliance.settings import Settings

log = logging.getLogger(__name__)


async def _enrolled() -> bool:
    from appliance.sync.state import get_state

    state = await get_state()
    return bool(state["central_url"] and state["box_secret"])


async def run_round(settings: Settings, day: dt.date) -> dict[str, Any]:
    """One round unless this node has nothing to sync with; the job's summary."""
    from appliance.sync import client
    from appliance.sync.state import get_state

    if settings.role == "central":
        return {"skipped": "central instance: the boxes sync with it"}
    if not await _enrolled():
        return {"skipped": "not enrolled (ctvms sync enroll --central URL --code=CODE)"}
    try:
        summary = await client.sync_once(respect_backoff=True)
    except client.SyncError as exc:
        # sync_once logged the warning and counted the failure; say when the next try is.
        state = await get_state()
        until = client.backoff_until(state)
        return {
            "warning": str(exc),
            "failures": int(state["failures"]),
            "retry_after": until.isoformat() if until else None,
        }
    if "skipped" in summary:
        return summary
    # The offset as seconds (a float), so a round that moved nothing counts as idle and is not
    # recorded every five minutes.
    offset = summary.pop("clock_offset_ms", 0)
    return {**summary, "clock_offset_s": round(int(offset) / 1000, 1)}


async def sync_soon(settings: Settings) -> None:
    """After a payment: ask the worker for a round now, when this box is enrolled.

    Only with a real queue: in immediate mode (tests, a process without a worker) the task would
    run inside the caller's request. A queue or database that cannot be read only means the
    five-minute schedule does it."""
    from appliance.jobs.queue import enqueue_quietly, huey

    if settings.role == "central" or huey.immediate:
        return
    try:
        enrolled = await _enrolled()
    except Exception:
        log.warning("could not read the sync state; the scheduled round will sync", exc_info=True)
        return
    if enrolled:
        from appliance.jobs.tasks import sync_now

        enqueue_quietly(sync_now)
