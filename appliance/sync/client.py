"""The box's side of sync: enrollment, push, pull, bootstrap, catch-up and the sync round.

Everything a round does is resumable: pushed changes are marked sent only when central has
answered with its last sequence (a lost answer means a resend, which central recognises by
change id), and pulled changes are applied together with the new cursor. A crash therefore
repeats at most the batch that was in flight. Pending changes are read in batches, so a backlog
of weeks costs one batch of memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import logging
import ssl
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import orjson

from appliance import clock
from appliance.db import write_transaction
from appliance.i18n import gettext as _
from appliance.settings import Settings
from appliance.sync import codec, hlc, merge
from appliance.sync.central import change_out
from appliance.sync.merge import apply_changes
from appliance.sync.state import (
    SCHEMA_VERSION,
    applying,
    get_state,
    now_ms,
    pending_count,
    receive_stamp,
    update_state,
)
from appliance.sync.tables import SyncChange

log = logging.getLogger(__name__)

# Changes per push request: central's MAX_BATCH. Fewer, larger batches cost less per change
# (each is a transaction with its commit on both sides); 1,000 changes are ~1-2 MB of JSON.
PUSH_BATCH = 1000
TIMEOUT_S = 30.0
MAX_BACKOFF_MIN = 60


# Idle connections are dropped before uvicorn's own 5 s keep-alive ends them: a request sent on
# a connection the server is closing at that moment fails as a reset.
_LIMITS = httpx.Limits(keepalive_expiry=2.0)


class SyncError(Exception):
    """A round could not finish; the message says why (shown to the admin)."""


class IdentityConflict(SyncError):
    """Central has other changes under this box's sequence numbers."""


@dataclass
class RoundResult:
    pushed: int = 0
    pulled: int = 0
    dead_letters: int = 0
    conflicts: int = 0
    clock_offset_ms: int = 0
    needs_update: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@functools.cache
def _tls() -> ssl.SSLContext:
    """The TLS context for central, built once per process: loading the CA bundle took ~20 ms,
    half of a round with nothing to sync when every round built its own client."""
    return httpx.create_ssl_context()


def _url(base: str, path: str) -> str:
    return base.rstrip("/") + "/api/v1/sync/" + path


def _headers(state: dict[str, Any]) -> dict[str, str]:
    return {"X-Ctvms-Box": f"{state['node_id']}:{state['box_secret']}"}


async def _post(
    http: httpx.AsyncClient, state: dict[str, Any], path: str, body: dict[str, Any]
) -> httpx.Response:
    try:
        return await http.post(
            _url(state["central_url"], path),
            content=orjson.dumps(body),  # perf: a push batch is ~0.5 MB of JSON
            headers={**_headers(state), "Content-Type": "application/json"},
        )
    except httpx.HTTPError as exc:
        raise SyncError(_("central unreachable: %(error)s", error=type(exc).__name__)) from exc


def _refusal(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = {}
    return body if isinstance(body, dict) else {}


# -- enrollment --------------------------------------------------------------------------------


async def enroll(settings: Settings, *, central_url: str, code: str, force: bool = False) -> dict:
    """Register this box at central with a one-time code and keep the credentials."""
    state = await get_state()
    if state["enrolled_at"] is not None and not force:
        raise SyncError(_("this box is enrolled already (use --force to enroll it again)"))
    async with httpx.AsyncClient(timeout=TIMEOUT_S, verify=_tls(), limits=_LIMITS) as http:
        try:
            response = await http.post(_url(central_url, "enroll"), json={"code": code})
        except httpx.HTTPError as exc:
            raise SyncError(_("central unreachable: %(error)s", error=type(exc).__name__)) from exc
    if response.status_code != 200:
        detail = _refusal(response).get("detail") or response.text[:200]
        raise SyncError(_("central refused the enrollment: %(detail)s", detail=detail))
    creds = response.json()
    if creds["office_code"] != settings.office_code:
        raise SyncError(
            _(
                "the code is for office %(code)s, but this box is set up as %(box)s "
                "(CTVMS_OFFICE_CODE)",
                code=creds["office_code"],
                box=settings.office_code,
            )
        )
    node_id = uuid.UUID(creds["node_id"])
    office = creds["office_code"]
    async with write_transaction():
        # Changes made before enrollment take the identity central gave this box.
        await SyncChange.raw(
            "UPDATE sync_changes SET node_id = {}, office_code = {} WHERE origin = 'local' "
            "AND sent = {}",
            node_id,
            office,
            False,
        )
        async with applying():
            await SyncChange.raw("UPDATE customers SET office = {} WHERE office = ''", office)
        rows = await SyncChange.raw(
            "SELECT id, data FROM sync_changes WHERE origin = 'local' AND sent = {} "
            "AND table_name = 'customers' AND op = 'insert'",
            False,
        )
        for row in rows:
            data = json.loads(row["data"])
            if not data.get("office"):
                data["office"] = office
                await SyncChange.raw(
                    "UPDATE sync_changes SET data = {} WHERE id = {}", json.dumps(data), row["id"]
                )
        await update_state(
            node_id=node_id,
            office_code=office,
            box_secret=creds["secret"],
            central_url=central_url.rstrip("/"),
            enrolled_at=clock.now(),
            last_error="",
            invoice_series=creds.get("invoice_series") or office,
        )
    log.info("enrolled at central", extra={"office": office, "node": str(node_id)})
    return {"node_id": str(node_id), "office_code": office, "office_name": creds["office_name"]}


# -- push --------------------------------------------------------------------------------------


async def _pending_batch(
    state: dict[str, Any], limit: int, *, after: int = 0
) -> list[dict[str, Any]]:
    rows = await SyncChange.raw(
        "SELECT * FROM sync_changes WHERE origin = 'local' AND sent = {} AND node_id = {} "
        "AND seq > {} ORDER BY seq LIMIT {}",
        False,
        state["node_id"],
        int(after),
        int(limit),
    )
    return [change_out(r) for r in rows]


def _read_ahead(state: dict[str, Any], changes: list[dict[str, Any]], limit: int) -> Any:
    """The batch after ``changes``, read while central applies them (a full batch may have
    another behind it); None when there is none to read."""
    if len(changes) < limit:
        return None
    return asyncio.ensure_future(_pending_batch(state, limit, after=int(changes[-1]["seq"])))


async def _discard(ahead: Any) -> None:
    if ahead is not None:
        ahead.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await ahead


async def _mark_sent(state: dict[str, Any], last_seq: int) -> None:
    await SyncChange.raw(
        "UPDATE sync_changes SET sent = {} WHERE origin = 'local' AND node_id = {} "
        "AND seq <= {} AND sent = {}",
        True,
        state["node_id"],
        int(last_seq),
        False,
    )


async def _block_numbering() -> None:
    await update_state(
        numbering_blocked=True,
        blocked_reason="central already has other changes under this box's "
        "sequence numbers: restored from an old backup, or a cloned card",
    )


async def push(http: httpx.AsyncClient, result: RoundResult, *, batch: int = PUSH_BATCH) -> None:
    """Send the pending changes in batches of ``batch``. The first request goes even when
    nothing is pending: central's answer (its last sequence from this box) is how a box restored
    from an old backup, which has nothing new to send yet, learns that it is behind itself."""
    state = await get_state()
    resent_from_gap = False
    first = True
    ahead: Any = None
    while True:
        if ahead is not None:
            changes, ahead = await ahead, None
        else:
            changes = await _pending_batch(state, batch)
        if not changes and not first:
            return
        first = False
        body = {
            "schema_version": SCHEMA_VERSION,
            "now_ms": now_ms(),
            "changes": changes,
        }
        # perf: the next batch is read from SQLite while central applies this one.
        ahead = _read_ahead(state, changes, batch)
        try:
            response = await _post(http, state, "push", body)
            at_end = response.status_code == 200 and (
                not changes or int(response.json()["last_seq"]) == int(changes[-1]["seq"])
            )
        except BaseException:
            await _discard(ahead)
            raise
        if not at_end:
            # Refused, or central stands elsewhere than this batch's end: read again below.
            await _discard(ahead)
            ahead = None
        if response.status_code == 409:
            refusal = _refusal(response)
            if refusal.get("error") == "gap" and not resent_from_gap:
                # Central lacks changes this box thought sent (central restored from backup):
                # send them again from where it stands.
                await SyncChange.raw(
                    "UPDATE sync_changes SET sent = {} WHERE origin = 'local' AND node_id = {} "
                    "AND seq >= {}",
                    False,
                    state["node_id"],
                    int(refusal["expected_seq"]),
                )
                resent_from_gap = True
                continue
            if refusal.get("error") == "identity_conflict":
                await _block_numbering()
                raise IdentityConflict(_("identity conflict: run `ctvms sync once` to catch up"))
            raise SyncError(_("central refused the push: %(refusal)s", refusal=refusal))
        if response.status_code != 200:
            refusal = _refusal(response)
            reason = refusal.get("error") or refusal.get("detail")
            raise SyncError(
                _(
                    "central refused the push (%(status)s): %(reason)s",
                    status=response.status_code,
                    reason=reason,
                )
            )
        answer = response.json()
        if int(answer["last_seq"]) > int((await get_state())["last_seq"]):
            # Central has more of this box's changes than the box ever made: its sequence went
            # backwards (an old backup put back, or a copy of the card).
            await _block_numbering()
            raise IdentityConflict(
                _(
                    "identity conflict: central has changes of this box that it lacks "
                    "(restored from an old backup?); run `ctvms sync once` to catch up"
                )
            )
        if changes:
            async with write_transaction():
                await _mark_sent(state, int(answer["last_seq"]))
                await update_state(clock_offset_ms=int(answer["clock_offset_ms"]))
        else:
            # The first request of a round with nothing pending: nothing to mark sent, so one
            # statement instead of a write transaction (perf: a no-op round's SQLite commits).
            await update_state(clock_offset_ms=int(answer["clock_offset_ms"]))
        result.pushed += int(answer["applied"])
        result.dead_letters += int(answer["dead_letters"])
        result.conflicts += int(answer["conflicts"])
        result.clock_offset_ms = int(answer["clock_offset_ms"])


# -- pull --------------------------------------------------------------------------------------


def _readable_prefix(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The changes before the first one of a schema newer than this box's."""
    for index, change in enumerate(changes):
        if int(change.get("schema_version") or SCHEMA_VERSION) > SCHEMA_VERSION:
            return changes[:index]
    return changes


async def apply_pulled(
    changes: list[dict[str, Any]], cursor: int, *, clock_offset_ms: int | None = None
) -> Any:
    """Apply a pulled page and move the cursor, in one transaction. ``clock_offset_ms``
    (central's clock minus this box's, measured now) is kept and used to judge stamps."""
    async with write_transaction():
        if clock_offset_ms is not None:
            await update_state(clock_offset_ms=clock_offset_ms)
        offset = int((await get_state())["clock_offset_ms"])
        readable = _readable_prefix(changes)
        async with applying():
            outcome = await apply_changes(readable, central=False)
            stamps = [int(c["hlc"]) for c in readable]
            if stamps:
                await receive_stamp(max(stamps), offset_ms=offset)
        if len(readable) < len(changes):
            # Keep the cursor before the first change this box cannot read: it and everything
            # after it come again once the box runs a version that understands them.
            outcome.newer_schema = True
            cursor = int(readable[-1]["feed_seq"]) if readable else None
            await update_state(needs_update=True)
        if cursor is not None:
            await update_state(cursor=cursor)
    return outcome


async def pull(http: httpx.AsyncClient, result: RoundResult, *, limit: int | None = None) -> None:
    while True:
        state = await get_state()
        body: dict[str, Any] = {"cursor": int(state["cursor"])}
        if limit:
            body["limit"] = int(limit)
        response = await _post(http, state, "pull", body)
        if response.status_code != 200:
            raise SyncError(_("central refused the pull (%(status)s)", status=response.status_code))
        page = response.json()
        offset = int(page["now_ms"]) - now_ms() if page.get("now_ms") else None
        if not page["changes"] and not page["more"]:
            # Nothing to apply (most rounds): keep the offset and the cursor in one statement,
            # without apply_pulled's write transaction (perf: a no-op round's SQLite commits).
            values: dict[str, Any] = {"cursor": int(page["cursor"])}
            if offset is not None:
                values["clock_offset_ms"] = offset
            await update_state(**values)
            return
        outcome = await apply_pulled(page["changes"], int(page["cursor"]), clock_offset_ms=offset)
        result.pulled += outcome.applied
        result.conflicts += outcome.conflicts
        result.dead_letters += outcome.dead
        if outcome.newer_schema:
            result.needs_update = True
            return
        if not page["more"]:
            return


# -- bootstrap and catch-up ----------------------------------------------------------------------


async def bootstrap(http: httpx.AsyncClient) -> int:
    """Fill an empty box with its office's rows from central, then set the cursor so the next
    pull continues from the snapshot. Rows changed while the snapshot is read come again with
    the pull and merge idempotently."""
    state = await get_state()
    response = await _post(http, state, "snapshot", {"table": None})
    if response.status_code != 200:
        raise SyncError(_("central refused the snapshot (%(status)s)", status=response.status_code))
    cursor = int(response.json()["cursor"])
    count = 0
    for table in codec.ORDER:
        if table == "outbox":
            continue
        after = None
        while True:
            response = await _post(http, state, "snapshot", {"table": table, "after": after})
            if response.status_code != 200:
                raise SyncError(
                    _("central refused the snapshot (%(status)s)", status=response.status_code)
                )
            page = response.json()
            rows = [{k: codec.decode(table, k, v) for k, v in r.items()} for r in page["rows"]]
            async with write_transaction(), applying():
                # perf: one read and one bulk insert a page, not two statements a row
                count += await merge.insert_absent(table, rows)
            after = page["after"]
            if not after:
                break
    await update_state(cursor=cursor)
    log.info("bootstrapped from central", extra={"rows": count, "cursor": cursor})
    return count


async def catch_up(http: httpx.AsyncClient) -> int:
    """After an identity conflict: fetch this node's changes central has and this box lacks,
    move the box's unsent changes after them, raise the invoice counters past every number
    central has seen from this office, then allow numbering again."""
    state = await get_state()
    sent = await SyncChange.raw(
        "SELECT coalesce(max(seq), 0) AS s FROM sync_changes WHERE origin = 'local' "
        "AND node_id = {} AND sent = {}",
        state["node_id"],
        True,
    )
    after = int(sent[0]["s"])
    fetched: list[dict[str, Any]] = []
    central_last = after
    while True:
        response = await _post(http, state, "own", {"after_seq": after})
        if response.status_code != 200:
            raise SyncError(
                _("central refused the catch-up (%(status)s)", status=response.status_code)
            )
        page = response.json()
        central_last = int(page["last_seq"])
        if not page["changes"]:
            break
        fetched += page["changes"]
        after = int(page["changes"][-1]["seq"])
    async with write_transaction():
        pending = await SyncChange.raw(
            "SELECT id FROM sync_changes WHERE origin = 'local' AND node_id = {} AND sent = {} "
            "ORDER BY seq",
            state["node_id"],
            False,
        )
        # Two steps so the (node, seq) index never sees two rows with one number.
        await SyncChange.raw(
            "UPDATE sync_changes SET seq = -seq WHERE origin = 'local' AND node_id = {} "
            "AND sent = {}",
            state["node_id"],
            False,
        )
        for offset, row in enumerate(pending, start=1):
            await SyncChange.raw(
                "UPDATE sync_changes SET seq = {} WHERE id = {}", central_last + offset, row["id"]
            )
        async with applying():
            outcome = await apply_changes(fetched, central=False)
        await SyncChange.raw(
            "UPDATE sync_changes SET origin = 'local', sent = {} WHERE node_id = {} "
            "AND origin = 'remote'",
            True,
            state["node_id"],
        )
        await update_state(last_seq=central_last + len(pending))
        await _raise_invoice_counters(state["office_code"], state["invoice_series"])
        await update_state(numbering_blocked=False, blocked_reason="")
    log.info(
        "caught up after an identity conflict",
        extra={"fetched": len(fetched), "moved": len(pending), "applied": outcome.applied},
    )
    return len(fetched)


async def _raise_invoice_counters(office_code: str, series: str) -> None:
    """Move this box's counters past every number of its series this box now knows."""
    series = series or office_code
    rows = await SyncChange.raw(
        "SELECT number FROM billing_payments WHERE office_code = {}", office_code
    )
    top: dict[int, int] = {}
    for row in rows:
        parts = str(row["number"]).rsplit("-", 2)
        if len(parts) == 3 and parts[0] == series and parts[1].isdigit() and parts[2].isdigit():
            year, serial = int(parts[1]), int(parts[2])
            top[year] = max(top.get(year, 0), serial)
    for year, serial in top.items():
        key = f"{series}-{year}"
        updated = await SyncChange.raw(
            "UPDATE invoice_counters SET last = {} WHERE id = {} AND last < {} RETURNING id",
            serial,
            key,
            serial,
        )
        exists = updated or await SyncChange.raw(
            "SELECT id FROM invoice_counters WHERE id = {}", key
        )
        if not exists:
            await SyncChange.raw(
                "INSERT INTO invoice_counters (id, office_code, year, last) "
                "VALUES ({}, {}, {}, {})",
                key,
                office_code,
                year,
                serial,
            )


# -- the round ---------------------------------------------------------------------------------


def backoff_until(state: dict[str, Any]) -> dt.datetime | None:
    """While central is unreachable, rounds wait 1, 2, 4 ... up to 60 minutes."""
    if not state["failures"] or state["last_attempt"] is None:
        return None
    minutes = min(2 ** (int(state["failures"]) - 1), MAX_BACKOFF_MIN)
    return state["last_attempt"] + dt.timedelta(minutes=minutes)


async def sync_once(
    *,
    respect_backoff: bool = False,
    http: httpx.AsyncClient | None = None,
    batch: int | None = None,
) -> dict:
    """One round: push everything pending, then pull everything new (catching up first when
    central reported an identity conflict). ``batch`` is the number of changes per push and
    per pulled page (default: PUSH_BATCH and central's page size)."""
    state = await get_state()
    if not state["central_url"] or not state["box_secret"]:
        raise SyncError(_("this box is not enrolled (ctvms sync enroll --central URL --code=CODE)"))
    if respect_backoff and (until := backoff_until(state)) and until > clock.now():
        return {"skipped": "backing off", "until": until.isoformat()}
    result = RoundResult()
    await update_state(last_attempt=clock.now())
    own = http is None
    http = http or httpx.AsyncClient(timeout=TIMEOUT_S, verify=_tls(), limits=_LIMITS)
    try:
        if state["numbering_blocked"]:
            await catch_up(http)
        if not state["cursor"] and not await _has_history():
            await bootstrap(http)
        await push(http, result, batch=batch or PUSH_BATCH)
        await pull(http, result, limit=batch)
    except SyncError as exc:
        failures = int(state["failures"]) + 1
        await update_state(last_error=str(exc), failures=failures)
        log.warning("sync round failed", extra={"error": str(exc), "failures": failures})
        raise
    finally:
        if own:
            await http.aclose()
    await update_state(
        last_success=clock.now(),
        last_error="",
        failures=0,
        needs_update=result.needs_update,
    )
    summary = result.as_dict()
    log.info("sync round done", extra=summary)
    return summary


async def _has_history() -> bool:
    """Whether the box already holds office data (then it needs no snapshot)."""
    rows = await SyncChange.raw("SELECT 1 AS x FROM sync_changes LIMIT 1")
    return bool(rows)


async def status() -> dict[str, Any]:
    state = await get_state()
    dead = await SyncChange.raw(
        "SELECT count(*) AS n FROM sync_dead_letters WHERE resolved_at IS NULL"
    )
    conflicts = await SyncChange.raw(
        "SELECT count(*) AS n FROM sync_conflicts WHERE reviewed_at IS NULL"
    )
    offset = int(state["clock_offset_ms"])
    return {
        "enrolled": state["enrolled_at"] is not None,
        "node_id": str(state["node_id"]),
        "office_code": state["office_code"],
        "central_url": state["central_url"],
        "last_success": state["last_success"],
        "last_attempt": state["last_attempt"],
        "last_error": state["last_error"],
        "failures": int(state["failures"]),
        "pending": await pending_count(),
        "cursor": int(state["cursor"]),
        "clock_offset_ms": offset,
        "clock_warning": abs(offset) > hlc.MAX_DRIFT_MS,
        "needs_update": bool(state["needs_update"]),
        "numbering_blocked": bool(state["numbering_blocked"]),
        "blocked_reason": state["blocked_reason"],
        "dead_letters": int(dead[0]["n"]),
        "open_conflicts": int(conflicts[0]["n"]),
    }
