"""The huey instance. Tasks register on it at import; its storage is chosen by
:func:`configure_queue` from the settings (SQLite in the data folder, Redis on central)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from huey import Huey
from huey.storage import RedisStorage, SqliteStorage

from appliance.settings import Settings

log = logging.getLogger(__name__)

# Immediate (in-memory, tasks run inline) until configured: importing never touches a disk.
huey = Huey("ctvms", immediate=True, utc=True)
_settings: Settings | None = None
T = TypeVar("T")


def configure_queue(settings: Settings, *, immediate: bool = False) -> Huey:
    global _settings
    _settings = settings
    if immediate:
        huey.immediate = True
        return huey
    if settings.redis_url:
        huey.storage_class = RedisStorage
        huey.storage_kwargs = {"url": settings.redis_url}
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        huey.storage_class = SqliteStorage
        huey.storage_kwargs = {"filename": str(settings.queue_path), "timeout": 15}
    huey._immediate = False
    try:
        huey.storage = huey.create_storage()
    except sqlite3.OperationalError as exc:
        # A read-only or full data folder must not keep the web server from serving reads:
        # open the queue without making its tables; enqueueing fails (quietly) until the
        # storage is back.
        log.warning("the job queue cannot be opened for writing: %s", exc)
        huey.storage = SqliteStorage(huey.name, create_tables=False, **huey.storage_kwargs)
    return huey


def task_settings() -> Settings:
    """Settings of the process running a task (the worker, or the web server inline)."""
    if _settings is None:
        raise RuntimeError("configure_queue() has not been called")
    return _settings


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run async domain code from a (synchronous) huey task, on a loop of its own."""
    from appliance import db

    async def main() -> T:
        try:
            return await factory()
        finally:
            eng = db.engine()
            if isinstance(eng, db.ApplianceSQLiteEngine):
                await eng.close_idle()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    # Immediate mode inside a running loop (tests, the web process): use a helper thread.
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


def enqueue_quietly(task: Callable[..., Any], *args: Any) -> None:
    """Enqueue a task; a queue that cannot be reached only delays the work (the periodic
    schedule picks it up), it must never fail the request that asked for it."""
    try:
        task(*args)
    except Exception:
        log.warning(
            "could not enqueue %s; the periodic run will do it", task.__name__, exc_info=True
        )
