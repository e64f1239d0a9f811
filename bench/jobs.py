"""The scheduled jobs over a large office: the status updater, the year updater and the month's
billing on an office of its own with about 100,000 connections (demo customers, one year of
history), in process.

Each is timed twice a run: the first time does the work (statuses after 40 days without payments,
the next year opened, January billed on 1 January), the second finds nothing to do (what every
later run costs); then the office is put back as it was, so each of ``--runs`` runs does the same
work.
Preparing the office (demo data and this year's billing rows) takes a few minutes, once per
folder: it is made in the run's scratch folder, or kept in ``BENCH_JOBS_DIR`` when that is set,
so later runs reuse it.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

from bench.core import Benchmark, Context, Result, median_figures

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
        # The office as it is on any day of the year: this year's months billed up to today.
        await charges.ensure_year(settings)
    return await Connection.count()


async def _timed(factory) -> tuple[float, Any]:
    start = time.perf_counter()
    value = await factory()
    return time.perf_counter() - start, value


def _settings(ctx: Context) -> Any:
    from appliance.settings import Settings

    kept = os.environ.get("BENCH_JOBS_DIR")
    folder = Path(kept) if kept else ctx.work_dir / "jobs-office"
    folder.mkdir(parents=True, exist_ok=True)
    return Settings.from_env({}, data_dir=folder, office_code="BJ", locale="en", smtp_host="")


async def _close() -> None:
    from appliance import db

    eng = db.engine()
    if isinstance(eng, db.ApplianceSQLiteEngine):
        await eng.close_idle()


async def _prepare(ctx: Context) -> Any:
    if "jobs_settings" not in ctx.extra:
        settings = _settings(ctx)
        try:
            ctx.extra["jobs_connections"] = await _office(settings)
        finally:
            await _close()
        ctx.extra["jobs_settings"] = settings
    return ctx.extra["jobs_settings"]


async def _last_change() -> int:
    from appliance.customers.tables import Connection

    rows = await Connection.raw("SELECT coalesce(max(seq), 0) AS n FROM sync_changes")
    return int(rows[0]["n"])


async def _changes_since(last_change: int) -> int:
    from appliance.customers.tables import Connection

    rows = await Connection.raw(
        "SELECT count(*) AS n FROM sync_changes WHERE seq > {}", last_change
    )
    return int(rows[0]["n"])


async def _forget_year(year: int, last_change: int) -> None:
    """Put the office back as it was before ``year`` was opened and billed (with the sync
    change log's entries for its months), so the next run does the same work again."""
    from appliance.customers.tables import Connection
    from appliance.db import write_transaction

    async with write_transaction():
        await Connection.raw("DELETE FROM billing_charges WHERE year = {}", year)
        await Connection.raw(
            "UPDATE billing_connections SET rows_through = {} WHERE rows_through >= {}",
            year - 1,
            year,
        )
        await Connection.raw("DELETE FROM sync_changes WHERE seq > {}", last_change)


def _result(ctx: Context, runs: list[dict[str, Any]], what: str) -> Result:
    return Result(
        figures=median_figures(runs),
        runs=runs,
        note=f"{ctx.extra['jobs_connections']} connections; {what}",
    )


async def status_updater(ctx: Context) -> Result:
    from appliance import clock
    from appliance.customers.status import update_statuses

    settings = await _prepare(ctx)
    today = clock.today(settings.tz)
    later = today + dt.timedelta(days=40)
    runs = []
    try:
        for _ in range(ctx.options.runs):
            busy_s, summary = await _timed(lambda: update_statuses(settings, today=later))
            idle_s, _ = await _timed(lambda: update_statuses(settings, today=later))
            await update_statuses(settings, today=today)  # back as it was, for the next run
            changed = summary["active"] + summary["inactive"] + summary["suspended"]
            runs.append({"changed": changed, "first_run_s": busy_s, "again_s": idle_s})
    finally:
        await _close()
    return _result(ctx, runs, "40 days without payments")


async def year_updater(ctx: Context) -> Result:
    from appliance import clock
    from appliance.billing import charges

    settings = await _prepare(ctx)
    next_year = clock.today(settings.tz).year + 1
    runs = []
    try:
        for _ in range(ctx.options.runs):
            last_change = await _last_change()
            busy_s, summary = await _timed(lambda: charges.ensure_year(settings, next_year))
            idle_s, _ = await _timed(lambda: charges.ensure_year(settings, next_year))
            await _forget_year(next_year, last_change)
            runs.append(
                {
                    "years_opened": summary.get("years_opened", 0),
                    "first_run_s": busy_s,
                    "again_s": idle_s,
                }
            )
    finally:
        await _close()
    return _result(ctx, runs, f"{next_year} opened on every grid (months get rows when billed)")


async def january_billing(ctx: Context) -> Result:
    """What the worker does at 00:10 on 1 January: January's month billed on every grid (a
    row each, logged for sync). The year updater at 00:05 opened the year; it runs first here
    too, untimed. Every other month's first day costs the same."""
    from appliance import clock
    from appliance.billing import charges

    settings = await _prepare(ctx)
    next_year = clock.today(settings.tz).year + 1
    new_year = dt.datetime(next_year, 1, 1, 0, 10, tzinfo=settings.tz)
    runs = []
    try:
        for _ in range(ctx.options.runs):
            last_change = await _last_change()
            await charges.ensure_year(settings, next_year)  # today, so nothing new is billed
            clock.shift(new_year - clock.now())
            try:
                busy_s, summary = await _timed(lambda: charges.bill_month(settings))
                idle_s, _ = await _timed(lambda: charges.bill_month(settings))
            finally:
                clock.reset()
            changes = await _changes_since(last_change)
            await _forget_year(next_year, last_change)
            runs.append(
                {
                    "billed": summary.get("billed", 0),
                    "changes_logged": changes,
                    "first_run_s": busy_s,
                    "again_s": idle_s,
                }
            )
    finally:
        await _close()
    return _result(ctx, runs, f"January {next_year} billed")


BENCHMARKS = [
    Benchmark(
        "status-updater",
        "status updater, ~100,000 connections",
        status_updater,
        target="first run ≤ 2 s",
        check=lambda f: f["first_run_s"] <= 2,
        order=500,
    ),
    Benchmark(
        "year-updater",
        "year updater, ~100,000 connections",
        year_updater,
        target="first run ≤ 3 s",
        check=lambda f: f["first_run_s"] <= 3,
        order=501,
    ),
    Benchmark(
        "january-billing",
        "a month's billing (1 January), ~100,000 connections",
        january_billing,
        target="report (none set)",
        order=502,
    ),
]
