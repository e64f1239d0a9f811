"""The admin dashboard's figures, kept in memory for a few seconds.

Computing them reads the connections, this month's charges and payments and a year of charges
(~5-50 ms at 20,000 customers, depending on the machine), and the dashboard is the page an
office keeps open and reloads. So each process keeps the last figures per database, office
filter, language (the charts hold formatted text) and day, and serves them again while all of
these hold:

- they are younger than :data:`TTL_SECONDS`, so nothing anyone sees is older than that;
- nothing was written through this process since (:func:`invalidate`, which the payment,
  customer and complaint services call after their writes);
- on SQLite, nothing was committed to the database file by anyone since, the worker and other
  server processes included (:mod:`appliance.data_version`, a few microseconds). So on a box
  the figures are never stale at all; the time-to-live only matters at central (PostgreSQL),
  where another server process's or a sync push's writes are seen within it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from appliance import clock
from appliance.data_version import data_version
from appliance.settings import Settings

TTL_SECONDS = 5.0
_TTL = dt.timedelta(seconds=TTL_SECONDS)
# Entries kept: every office filter at central times two languages is still small, but a
# process that meets many databases (the tests) must not grow without end.
MAX_ENTRIES = 64

# key -> (computed at, generation, data version, figures)
_entries: dict[tuple[Any, ...], tuple[dt.datetime, int, Any, Any]] = {}
_generation = 0
# (event loop, key) -> a lock held while the figures are computed, so concurrent requests wait
# for one computation instead of running the same queries side by side.
_locks: dict[tuple[int, tuple[Any, ...]], asyncio.Lock] = {}


def invalidate() -> None:
    """Forget every kept figure: something they count has just been written."""
    global _generation
    _generation += 1
    _entries.clear()


# -- the cache --------------------------------------------------------------------------------


async def figures(
    settings: Settings, key: tuple[Any, ...], compute: Callable[[], Awaitable[Any]]
) -> Any:
    """The figures under ``key`` (with the database added to it), computed by ``compute`` when
    none are kept or the kept ones may be out of date."""
    key = (settings.database_url, *key)
    found, value = _fresh(settings, key)
    if found:
        return value
    flight = (id(asyncio.get_running_loop()), key)
    if len(_locks) >= MAX_ENTRIES and flight not in _locks:
        _locks.clear()
    async with _locks.setdefault(flight, asyncio.Lock()):
        # Another request may have computed them while this one waited.
        found, value = _fresh(settings, key)
        if found:
            return value
        # Read before computing: a write landing during the computation makes the next
        # request compute again.
        generation, version, now = _generation, data_version(settings), clock.now()
        value = await compute()
        if version is not None or not settings.is_sqlite:
            if len(_entries) >= MAX_ENTRIES:
                _entries.pop(next(iter(_entries)))
            _entries[key] = (now, generation, version, value)
        return value


def _fresh(settings: Settings, key: tuple[Any, ...]) -> tuple[bool, Any]:
    kept = _entries.get(key)
    if kept is None:
        return False, None
    at, generation, version, value = kept
    now = clock.now()
    # A clock set back (a box without a battery-backed clock) must not keep figures either.
    if generation != _generation or not at <= now < at + _TTL:
        return False, None
    if settings.is_sqlite and (version is None or version != data_version(settings)):
        return False, None
    return True, value
