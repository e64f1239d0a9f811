"""API: sync between boxes and central (``/api/v1/sync``).

These routes are served by central only. They are not behind a user session: a box proves
itself with the ``X-Ctvms-Box: <node id>:<secret>`` header it got at enrollment, checked here
against the secret's hash (unknown, revoked and impersonating boxes are refused)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
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


def _refused(exc: central.SyncRefused) -> Response:
    return Response(content=exc.body, status_code=exc.status)


def _body(data: Any) -> dict[str, Any]:
    return data if isinstance(data, dict) else {}


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
    try:
        box = await _box(request)
        return await central.push(box, _body(data))
    except central.SyncRefused as exc:
        return _refused(exc)


@post(
    "/sync/pull",
    opt={"public": True},
    operation_id="syncPull",
    tags=["sync"],
    summary="Changes after the box's cursor that concern its office",
    status_code=200,
)
async def sync_pull(request: Request, data: dict[str, Any] = Body()) -> Any:
    try:
        box = await _box(request)
        body = _body(data)
        return await central.pull(
            box,
            cursor=int(body.get("cursor") or 0),
            limit=int(body.get("limit") or central.PULL_LIMIT),
        )
    except central.SyncRefused as exc:
        return _refused(exc)


@post(
    "/sync/own",
    opt={"public": True},
    operation_id="syncOwnChanges",
    tags=["sync"],
    summary="A box's own changes central has after a sequence number (catch-up)",
    status_code=200,
)
async def sync_own(request: Request, data: dict[str, Any] = Body()) -> Any:
    try:
        box = await _box(request)
        return await central.own_changes(box, after_seq=int(_body(data).get("after_seq") or 0))
    except central.SyncRefused as exc:
        return _refused(exc)


@post(
    "/sync/snapshot",
    opt={"public": True},
    operation_id="syncSnapshot",
    tags=["sync"],
    summary="Bootstrap: the feed position, or one page of the office's rows of a table",
    status_code=200,
)
async def sync_snapshot(request: Request, data: dict[str, Any] = Body()) -> Any:
    try:
        box = await _box(request)
        body = _body(data)
        if not body.get("table"):
            return {"cursor": await central.feed_top()}
        return await central.snapshot_page(
            box, table=str(body["table"]), after=body.get("after") or None
        )
    except central.SyncRefused as exc:
        return _refused(exc)


ROUTES = [sync_enroll, sync_push, sync_pull, sync_own, sync_snapshot]
