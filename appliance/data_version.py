"""A number that changes whenever anyone commits to the box's SQLite database.

``PRAGMA data_version`` on a connection changes with every commit made through any *other*
connection: this process's pooled and transaction connections, the worker's, other server
processes'. Read on a connection of our own, kept open per thread and only ever used to read,
it costs a few microseconds and no disk access, so in-memory caches (the dashboard's figures,
resolved sessions) can check on every request that nothing was written since they were filled.
PostgreSQL has no such number: there :func:`data_version` is None and callers rely on a
time-to-live or do not cache.

The connection is opened read-write, not ``mode=ro``, and closed when the process exits: in WAL
mode the last connection to close folds the WAL into the database file, and a read-only one
cannot. A read-only connection left open made the server's own last close skip that, and a box
restarted on read-only storage (where the engine opens the file as immutable, ignoring the WAL)
then missed the latest rows. On read-only storage no connection is opened at all.
"""

from __future__ import annotations

import atexit
import itertools
import os
import sqlite3
import threading
from typing import Any

from appliance.db import _read_only_folder
from appliance.settings import Settings

_local = threading.local()
_serial = itertools.count(1)
_open: set[sqlite3.Connection] = set()  # of every thread, closed at exit
# A server has one database; a process that meets many (the tests) keeps only the last few open.
KEEP_CONNECTIONS = 4


_paths: dict[str, str] = {}


def _path(settings: Settings) -> str:
    # Settings.sqlite_path builds a Path on every call; this runs on every request.
    path = _paths.get(settings.database_url)
    if path is None:
        path = _paths[settings.database_url] = str(settings.sqlite_path)
    return path


def _kept(path: str) -> tuple[sqlite3.Connection, int]:
    """This thread's connection to ``path`` and its serial, opened when missing."""
    conns = _local.__dict__
    inode = os.stat(path).st_ino
    kept = conns.get(path)
    if kept is None or kept[1] != inode:
        if _read_only_folder(path):
            # Nothing is written there, and the engine opens the file as immutable
            # (appliance/db.py): no connection, no caching.
            raise OSError(f"{path} is on read-only storage")
        # A replaced file (a restore) gets a new connection, whose numbering starts afresh:
        # the serial keeps its values apart from the old connection's.
        if kept is not None:
            _close(conns.pop(path)[0])
        while len(conns) >= KEEP_CONNECTIONS:
            _close(conns.pop(next(iter(conns)))[0])
        # mode=rw: never creates the file. check_same_thread=False only so that the exit
        # handler may close it; it is used by the thread that opened it.
        conn = sqlite3.connect(
            f"file:{path}?mode=rw", uri=True, timeout=0.2, check_same_thread=False
        )
        _open.add(conn)
        kept = conns[path] = (conn, inode, next(_serial))
    return kept[0], kept[2]


def _close(conn: sqlite3.Connection) -> None:
    _open.discard(conn)
    conn.close()


def _forget(path: str) -> None:
    stale = _local.__dict__.pop(path, None)
    if stale is not None:
        _close(stale[0])


@atexit.register
def _close_all() -> None:
    for conn in list(_open):
        _close(conn)


def data_version(settings: Settings) -> Any:
    """An opaque value equal between two calls only if nothing was committed in between; None
    on PostgreSQL or when the file cannot be read (then nothing may be taken from a cache)."""
    if not settings.is_sqlite:
        return None
    path = _path(settings)
    try:
        conn, serial = _kept(path)
        ((version,),) = conn.execute("PRAGMA data_version").fetchall()
    except (sqlite3.Error, OSError):
        _forget(path)
        return None
    return (serial, version)


def read_one(settings: Settings, sql: str, *args: Any) -> tuple[Any, ...] | None:
    """One row of a read on the same kept connection (no event loop, no thread hop), as
    committed now; None on PostgreSQL, when there is no row or the file cannot be read."""
    if not settings.is_sqlite:
        return None
    path = _path(settings)
    try:
        conn = _kept(path)[0]
        # fetchall() ends the statement, so no read transaction stays open between requests.
        rows = conn.execute(sql, args).fetchall()
    except (sqlite3.Error, OSError):
        _forget(path)
        return None
    return rows[0] if rows else None
