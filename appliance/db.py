"""Database engines, identifiers and the write-transaction helper.

The appliance runs on SQLite; central runs the same tables on PostgreSQL. Every table is bound to
the engine built from the settings by :func:`configure`, so tests and commands can point the
whole application at their own database file.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiosqlite
import uuid6
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, SQLiteTransaction, TransactionType, dict_factory

from appliance.settings import Settings

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 15.0
# SQLite settings every connection gets: foreign keys are per connection, and FULL makes a
# committed payment survive a power cut in WAL mode.
_PRAGMAS = ("PRAGMA foreign_keys = ON", "PRAGMA synchronous = FULL")


def _read_only_folder(database: str) -> bool:
    """True when the database's folder is on a filesystem mounted read-only."""
    try:
        return bool(os.statvfs(Path(database).parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def new_id() -> uuid.UUID:
    """A UUIDv7: time-ordered, so ids sort by creation and index well, and unique across boxes."""
    return uuid.UUID(int=uuid6.uuid7().int)


def derived_id(kind: str, at_ms: int, *parts: Any) -> uuid.UUID:
    """The id of a row every node makes alike from the same facts (a connection's month of
    billing): a box and central that each make it hold one row under one id, not two rows for
    sync to reconcile. :func:`derived_id_sql` is the same in SQL.

    Laid out like a UUIDv7 (version 8, the layout's own): ``at_ms``, the instant the row is
    about, in the first 48 bits, then 74 bits of an MD5 of ``kind`` and ``parts``. So a month's
    rows sit together at one place of the primary key's index, as :func:`new_id`'s rows do,
    instead of all over it. (Measured at 1.2 million charges, where the index fits the bulk
    jobs' 64 MB page cache, random ids cost no more; with five years of a large office it no
    longer fits, and a month's inserts then stay in a few pages.)"""
    return uuid.UUID(hex=_derived_hex(kind, at_ms, parts))


def _derived_hex(kind: str, at_ms: int, parts: tuple[Any, ...]) -> str:
    text = ":".join(("ctvms", kind, *(_id_text(p) for p in parts)))
    digest = hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
    return f"{int(at_ms):012x}8{digest[:3]}{'89ab'[int(digest[3], 16) % 4]}{digest[4:19]}"


def _id_text(value: Any) -> str:
    if isinstance(value, str):
        if len(value) == 36 and value == value.lower():
            return value  # the canonical spelling already (perf: every id SQLite hands over)
        if len(value) in (32, 36):
            try:
                return str(uuid.UUID(value))  # one spelling, whatever the text's case
            except ValueError:
                return value
    return str(value)


def _sqlite_derived_id(kind: str, at_ms: int, *parts: Any) -> str:
    h = _derived_hex(kind, at_ms, parts)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def derived_id_sql(kind: str, at_ms: str, *expressions: str) -> str:
    """SQL for :func:`derived_id` of ``kind`` (a constant) over an integer expression in ms
    and id and integer expressions."""
    if not kind.isidentifier():
        raise ValueError(kind)
    if is_sqlite():
        return f"ctvms_derived_id('{kind}', {at_ms}, {', '.join(expressions)})"
    text = " || ':' || ".join(f"CAST({e} AS text)" for e in expressions)
    digest = f"md5('ctvms:{kind}:' || {text})"
    return (
        f"CAST(lpad(to_hex(CAST({at_ms} AS bigint)), 12, '0') || '8' || substr({digest}, 1, 3) "
        f"|| substr('89ab', (strpos('0123456789abcdef', substr({digest}, 4, 1)) - 1) % 4 + 1, 1)"
        f" || substr({digest}, 5, 15) AS uuid)"
    )


class _PooledTransaction(SQLiteTransaction):
    """A transaction on a connection from the engine's idle list, given back after a clean end.

    A connection comes back only when its COMMIT or ROLLBACK went through and nothing went
    wrong in SQLite or the file system meanwhile; otherwise it is closed, as Piccolo does."""

    engine: ApplianceSQLiteEngine
    _keep_out = False  # set by ApplianceSQLiteEngine.close_after_transaction

    async def get_connection(self) -> aiosqlite.Connection:
        return await self.engine.take_connection()

    async def __aenter__(self) -> SQLiteTransaction:
        if self._parent is not None:
            return self._parent
        self.connection = await self.get_connection()
        try:
            await self.begin()
        except BaseException:
            # BEGIN IMMEDIATE that waited out the busy timeout: no transaction to end, and a
            # connection left open would keep its thread (and the process) alive.
            await self.connection.close()
            raise
        self.context = self.engine.current_transaction.set(self)
        return self

    async def __aexit__(self, exception_type: Any, exception: Any, traceback: Any) -> bool:
        if self._parent:
            return exception is None
        clean = False
        try:
            if exception:
                if not self._rolled_back:
                    await self.rollback()
            elif not self._committed and not self._rolled_back:
                await self.commit()
            clean = not isinstance(exception, sqlite3.Error | OSError)
        finally:
            if clean and not self._keep_out:
                await self.engine.give_back(self.connection)
            else:
                await self.connection.close()
            self.engine.current_transaction.reset(self.context)
        return exception is None


class ApplianceSQLiteEngine(SQLiteEngine):
    """SQLite engine that reuses its connections.

    Piccolo opens a new connection (and thread) for every statement outside a transaction and
    for every transaction, which costs milliseconds on a small box: the thread, the file, and
    reading the schema again before the first statement (3-8 ms here at 20,000 customers). A
    connection between two uses holds no transaction, so it waits in a small idle list per event
    loop and serves the next single statement or transaction.
    """

    __slots__ = ("_idle", "pool_size")

    def __init__(self, path: str, *, pool_size: int = 4) -> None:
        super().__init__(path=path, timeout=BUSY_TIMEOUT_S)
        self._idle: dict[int, list[aiosqlite.Connection]] = {}
        self.pool_size = pool_size

    async def get_connection(self) -> aiosqlite.Connection:
        kwargs = self.connection_kwargs
        if _read_only_folder(kwargs["database"]):
            # SQLite cannot open a WAL database on read-only storage once its -shm file is gone
            # (after a clean shutdown): reads would fail too. Nothing can change the file
            # there, so it is opened as immutable; writes fail as "readonly database".
            uri = Path(kwargs["database"]).resolve().as_uri() + "?mode=ro&immutable=1"
            kwargs = {**kwargs, "database": uri, "uri": True}
        connection = await aiosqlite.connect(**kwargs)
        connection.row_factory = dict_factory  # type: ignore[assignment]
        for pragma in _PRAGMAS:
            await connection.execute(pragma)
        await connection.create_function(
            "ctvms_derived_id", -1, _sqlite_derived_id, deterministic=True
        )
        return connection

    def transaction(
        self,
        transaction_type: TransactionType = TransactionType.deferred,
        allow_nested: bool = True,
    ) -> SQLiteTransaction:
        return _PooledTransaction(
            engine=self, transaction_type=transaction_type, allow_nested=allow_nested
        )

    async def take_connection(self) -> aiosqlite.Connection:
        idle = self._idle.setdefault(id(asyncio.get_running_loop()), [])
        return idle.pop() if idle else await self.get_connection()

    async def give_back(self, connection: aiosqlite.Connection) -> None:
        idle = self._idle.setdefault(id(asyncio.get_running_loop()), [])
        if len(idle) < self.pool_size:
            idle.append(connection)
        else:
            await connection.close()

    @staticmethod
    def close_after_transaction() -> None:
        """The current transaction's connection is closed at its end instead of reused (it
        was given settings the next user should not inherit, such as a big page cache)."""
        current = engine().current_transaction.get()
        if isinstance(current, _PooledTransaction):
            current._keep_out = True

    async def _run_in_new_connection(
        self,
        query: str,
        args: list[Any] | None = None,
        query_type: str = "generic",
        table: Any = None,
    ) -> Any:
        connection = await self.take_connection()
        try:
            async with connection.execute(query, args or []) as cursor:
                rows = await cursor.fetchall()
        except BaseException:
            await connection.close()
            raise
        await self.give_back(connection)
        return rows

    async def _run_in_existing_connection(
        self,
        connection: Any,
        query: str,
        args: list[Any] | None = None,
        query_type: str = "generic",
        table: Any = None,
    ) -> Any:
        async with connection.execute(query, args or []) as cursor:
            return await cursor.fetchall()

    async def close_idle(self) -> None:
        """Close pooled connections of the running loop (at shutdown)."""
        for connection in self._idle.pop(id(asyncio.get_running_loop()), []):
            await connection.close()


def build_engine(settings: Settings) -> Engine:
    if settings.is_sqlite:
        path = settings.sqlite_path
        path.parent.mkdir(parents=True, exist_ok=True)
        return ApplianceSQLiteEngine(str(path))
    url = urlparse(settings.database_url)
    config = {
        "host": url.hostname or "127.0.0.1",
        "port": url.port or 5432,
        "user": url.username or "postgres",
        "database": (url.path or "/postgres").lstrip("/"),
    }
    if url.password:
        config["password"] = url.password
    return PostgresEngine(config=config)


_engine: Engine | None = None


def configure(settings: Settings) -> Engine:
    """Build the engine for ``settings`` and bind every table to it."""
    global _engine
    from piccolo.apps.migrations.tables import Migration

    from appliance import piccolo_conf
    from appliance.tables import ALL_TABLES

    engine = build_engine(settings)
    for table in (*ALL_TABLES, Migration):
        table._meta.db = engine
    # Piccolo's migration runner looks the engine up through PICCOLO_CONF.
    os.environ["PICCOLO_CONF"] = "appliance.piccolo_conf"
    piccolo_conf.DB = engine
    _engine = engine
    return engine


def engine() -> Engine:
    if _engine is None:
        raise RuntimeError("appliance.db.configure() has not been called")
    return _engine


def is_sqlite() -> bool:
    return engine().engine_type == "sqlite"


@asynccontextmanager
async def write_transaction() -> AsyncIterator[Any]:
    """A transaction for reads followed by writes.

    On SQLite it begins IMMEDIATE: the write lock is taken up front, so a read-then-write can
    never fail with "database is locked" when the web server and the worker both write.
    Nested use joins the outer transaction.
    """
    eng = engine()
    if isinstance(eng, SQLiteEngine):
        tx = eng.transaction(transaction_type=TransactionType.immediate)
    else:
        tx = eng.transaction()
    async with tx as t:
        yield t


async def enable_wal(eng: Engine) -> None:
    """WAL lets readers work while one writer commits; the mode is stored in the file."""
    if isinstance(eng, SQLiteEngine):
        await eng.run_ddl("PRAGMA journal_mode = WAL")
