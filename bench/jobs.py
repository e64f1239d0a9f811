"""The scheduled jobs over a large office: the status updater and the year updater on an office
of its own with about 100,000 connections (demo customers, one year of history), in process.

Each is timed twice: the first run does the work (statuses after 40 days without payments, the
next year's rows on 1 January), the second finds nothing to do (what every later run costs).
Preparing the office (demo data and this year's billing rows) takes a minute or two, once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from bench.core import Benchmark, Context, Result

CONNECTIONS = 100_000
CUSTOMERS = 77_000  # the demo gives about 1.3 connections per customer


async def _office(settings: Any) -> int:
    from appliance import cli, db
    from appliance.customers.tables import Connection
    from appliance.demo import fill

    db.configure(settings)
    await cli.migrate(settings)
    if not await Connection.count():
        from appliance.billing import charges

        await fill(settings, customers=CUSTOMERS, years=1, seed=7)
        # The office as it is on any day of the year: this year's months in place.
        await charges.ensure_year(settings)
    return await Connection.count()


async def _timed(factory) -> tuple[float, Any]:
    start = time.perf_counter()
    value = await factory()
    return time.perf_counter() - start, value


def _settings(ctx: Context) -> Any:
    from appliance.settings import Settings

    folder = ctx.work_dir / "jobs-office"
    folder.mkdir(parents=True, exist_ok=True)
    return Settings.from_env({}, data_dir=folder, office_code="BJ", locale="en", smtp_host="")


async def _close() -> None:
    from appliance import db

    eng = db.engine()
    if isinstance(eng, db.ApplianceSQLiteEngine):
        await eng.close_idle()


def _prepare(ctx: Context) -> Any:
    if "jobs_settings" not in ctx.extra:
        settings = _settings(ctx)

        async def main() -> int:
            try:
                return await _office(settings)
            finally:
                await _close()

        ctx.extra["jobs_connections"] = asyncio.run(main())
        ctx.extra["jobs_settings"] = settings
    return ctx.extra["jobs_settings"]


def status_updater(ctx: Context) -> Result:
    from appliance import clock
    from appliance.customers.status import update_statuses

    settings = _prepare(ctx)
    today = clock.today(settings.tz)

    async def main() -> Result:
        try:
            later = today + dt.timedelta(days=40)
            busy_s, summary = await _timed(lambda: update_statuses(settings, today=later))
            idle_s, _ = await _timed(lambda: update_statuses(settings, today=later))
            await update_statuses(settings, today=today)  # back as it was, for later runs
        finally:
            await _close()
        changed = summary["active"] + summary["inactive"] + summary["suspended"]
        return Result(
            figures={"changed": changed, "first_run_s": busy_s, "again_s": idle_s},
            note=f"{ctx.extra['jobs_connections']} connections; 40 days without payments",
        )

    return asyncio.run(main())


def year_updater(ctx: Context) -> Result:
    from appliance import clock
    from appliance.billing import charges

    settings = _prepare(ctx)
    next_year = clock.today(settings.tz).year + 1

    async def main() -> Result:
        try:
            busy_s, summary = await _timed(lambda: charges.ensure_year(settings, next_year))
            idle_s, _ = await _timed(lambda: charges.ensure_year(settings, next_year))
        finally:
            await _close()
        return Result(
            figures={
                "rows_created": summary.get("rows_created", 0),
                "first_run_s": busy_s,
                "again_s": idle_s,
            },
            note=f"{ctx.extra['jobs_connections']} connections; rows for {next_year}",
        )

    return asyncio.run(main())


BENCHMARKS = [
    Benchmark(
        "status-updater",
        "status updater, ~100,000 connections",
        status_updater,
        target="first run ≤ 10 s",
        check=lambda f: f["first_run_s"] <= 10,
        order=500,
    ),
    Benchmark(
        "year-updater",
        "year updater, ~100,000 connections",
        year_updater,
        target="first run ≤ 60 s",
        check=lambda f: f["first_run_s"] <= 60,
        order=501,
    ),
]
