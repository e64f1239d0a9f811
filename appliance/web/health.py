"""A bare public page: readiness probe for tests and scripts, and the benchmark's yardstick.

``/healthz`` never touches the database or a session, so it answers while the storage is in
trouble; it then says which trouble, from two system calls on the data folder (a few
microseconds), so a monitor or the installer's checks can tell "up" from "up but cannot save".
"""

from __future__ import annotations

import logging
import os

from litestar import MediaType, Request, get

from appliance.i18n import gettext as _
from appliance.settings import Settings

log = logging.getLogger(__name__)

# Below this much free space SQLite may fail any write (a page split, the WAL growing).
MIN_FREE_BYTES = 512 * 1024


def storage_status(settings: Settings) -> str | None:
    """``"read_only"`` or ``"full"`` when the box's data folder cannot take writes, else None.

    Only the SQLite box keeps its data in a local folder; central's PostgreSQL reports its own
    trouble through its errors."""
    if not settings.is_sqlite:
        return None
    folder = settings.data_dir
    try:
        stat = os.statvfs(folder)
    except OSError:
        return "io_error"
    database = settings.sqlite_path
    if stat.f_flag & os.ST_RDONLY or not os.access(folder, os.W_OK):
        return "read_only"
    if database.exists() and not os.access(database, os.W_OK):
        return "read_only"
    if stat.f_bavail * stat.f_frsize < MIN_FREE_BYTES:
        return "full"
    return None


def storage_message(kind: str | None) -> str:
    """A short line for the admin's banner (empty when all is well)."""
    if kind is None:
        return ""
    return {
        "full": _("The disk is full: nothing new can be saved until space is freed."),
        "read_only": _("The data folder is read-only: nothing new can be saved."),
    }.get(kind, _("The storage is failing: nothing new can be saved."))


@get("/healthz", opt={"public": True}, media_type=MediaType.TEXT, include_in_schema=False)
async def healthz(request: Request) -> str:
    """Answer "ok" without touching the database or a session, or "ok, storage <trouble>"
    (still 200: the server is up and serves reads) when the data folder cannot take writes."""
    kind = storage_status(request.app.state.settings)
    return "ok" if kind is None else f"ok, storage {kind}"


ROUTES = [healthz]
