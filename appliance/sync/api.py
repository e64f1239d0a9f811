"""API: sync between boxes and central (``/api/v1/sync``).

These routes are served by central only. They are not behind a user session: a box proves
itself with the ``X-Ctvms-Box: <node id>:<secret>`` header it got at enrollment, checked here
against the secret's hash (unknown, revoked and impersonating boxes are refused). A refusal
(``central.SyncRefused``) becomes its status and body in ``appliance/web/errors.py``."""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar.params import Body

from appliance.errors import NotFound
from appliance.i18n import gettext as _
from appliance.sync import central
from appliance.web.forms import settings_of

BOX_HEADER = "x-ctvms-box"


def _central_only(request: Request) -> None:
    if settings_of(request).role != "central":
        raise NotFound(_("Sync is served by the central instance, not by an office box."))


async def _box(request: Request) -> dict[str, Any]:
    _central_only(request)
    return await central.authenticate(request.headers.get(BOX_HEADER))


def _body(data: Any) -> dict[str, Any]:
    return data if isinstance(data, dict) else {}


def _number(body: dict[str, Any], key: str, default: int = 0) -> int:
    value = body.get(key)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise central.SyncRefused(
            422, {"error": "invalid", "detail": f"{key} must be a whole number"}
        ) from None


# What each pushed change must carry; the values are checked again where they are used.
_CHANGE_KEYS = ("id", "seq", "hlc", "node_id", "table_name", "row_id", "op", "data")


def _push_body(data: Any) -> dict[str, Any]:
    """A push batch of the right shape, or a 422 saying what is wrong (never a 500)."""
    body = _body(data)
    changes = body.get("changes") or []
    if not isinstance(changes, list):
        raise central.SyncRefused(422, {"error": "invalid", "detail": "changes must be a list"})
    for position, change in enumerate(changes):
        missing = [k for k in _CHANGE_KEYS if not isinstance(change, dict) or k not in change]
        if missing:
            raise central.SyncRefused(
                422,
                {"error": "invalid", "detail": f"change {position} lacks {', '.join(missing)}"},
            )
        _number(change, "seq")
        _number(change, "hlc")
        if not isinstance(change["data"], dict):
            raise central.SyncRefused(
                422, {"error": "invalid", "detail": f"change {position}: data must be an object"}
            )
    _number(body, "now_ms")
    return body


@post(
    "/sync/enroll",
    opt={"public": True},
    operation_id="syncEnroll",
    tags=["sync"],
    summary="Enroll a box with a one-time code; answers its node id and secret",
    status_code=200,
)
async def sync_enroll(request: Request, data: dict[str, Any] = Body()) -> dict[str, Any]:
    _central_only(request)
    return await central.enroll(str(_body(data).get("code") or ""))


@post(
    "/sync/push",
    opt={"public": True},
    operation_id="syncPush",
    tags=["sync"],
    summary="Push a batch of a box's changes; answers the last sequence central has",
    status_code=200,
)
async def sync_push(request: Request, data: dict[str, Any] = Body()) -> Any:
    box = await _box(request)
    return await central.push(box, _push_body(data))


@post(
    "/sync/pull",
    opt={"public": True},
    operation_id="syncPull",
    tags=["sync"],
    summary="Changes after the box's cursor that concern its office",
    status_code=200,
)
async def sync_pull(request: Request, data: dict[str, Any] = Body()) -> Any:
    box = await _box(request)
    body = _body(data)
    return await central.pull(
        box,
        cursor=_number(body, "cursor"),
        limit=_number(body, "limit", central.PULL_LIMIT),
    )


@post(
    "/sync/own",
    opt={"public": True},
    operation_id="syncOwnChanges",
    tags=["sync"],
    summary="A box's own changes central has after a sequence number (catch-up)",
    status_code=200,
)
async def sync_own(request: Request, data: dict[str, Any] = Body()) -> Any:
    box = await _box(request)
    return await central.own_changes(box, after_seq=_number(_body(data), "after_seq"))


@post(
    "/sync/snapshot",
    opt={"public": True},
    operation_id="syncSnapshot",
    tags=["sync"],
    summary="Bootstrap: the feed position, or one page of the office's rows of a table",
    status_code=200,
)
async def sync_snapshot(request: Request, data: dict[str, Any] = Body()) -> Any:
    box = await _box(request)
    body = _body(data)
    if not body.get("table"):
        return {"cursor": await central.feed_top()}
    return await central.snapshot_page(
        box, table=str(body["table"]), after=body.get("after") or None
    )


ROUTES = [sync_enroll, sync_push, sync_pull, sync_own, sync_snapshot]
