"""Sync with a central instance on PostgreSQL (issues 6 and 7): a new box of a large office
bootstrapping from central, sync rounds with 100 changes and with none, and a box pushing
10,000 payments taken offline.

Central is a real ``ctvms serve`` process (``CTVMS_ROLE=central``) on a PostgreSQL database this
module creates on ``CTVMS_BENCH_PG``'s server (default the local one at 127.0.0.1:5432) and drops
at the end. Its office is filled with ``ctvms demo --customers N --years 1`` and the year
updater's work (this year's months, billed up to today; in this process, with the capture
triggers off). The box is a SQLite data folder driven in this process: enrolled with a one-time
code from ``ctvms sync office``, then bootstrapped, synced and paid into through the appliance's
own functions.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.core import Benchmark, Context, Result, percentile
from bench.measure import BenchError
from bench.server import ServerProcess

PG_ADMIN = os.environ.get("CTVMS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
OFFICE = "BS"
PAYMENTS = 10_000
ROUND_CHANGES = 100
ROUNDS = 20  # no-op rounds per run


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _db_url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


class Setup:
    """Central (server process and database) and the box, built once per benchmark run."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.db_name = f"ctvms_bench_sync_{uuid.uuid4().hex[:10]}"
        self.central: ServerProcess | None = None
        self.box: Any = None
        self.bootstrap: dict[str, float] = {}
        self.customers = ctx.options.customers

    # -- central --------------------------------------------------------------------------

    async def start_central(self) -> None:
        import asyncpg

        await _pg(f'CREATE DATABASE "{self.db_name}"')
        atexit.register(self.close)
        env = {
            "CTVMS_ROLE": "central",
            "CTVMS_DATABASE_URL": _db_url(self.db_name),
            "CTVMS_OFFICE_CODE": OFFICE,  # the demo office's CRF prefix
            "CTVMS_ADVERTISE": "off",
        }
        self.central = ServerProcess(self.ctx.work_dir / "central", env=env)
        started = time.perf_counter()
        self.central.ctvms("migrate")
        self.central.ctvms("demo", "--customers", str(self.customers), "--years", "1", timeout=1800)
        await self.bill_central()
        # The office's customers belong to it (the capture triggers off: no feed entries).
        conn = await asyncpg.connect(_db_url(self.db_name))
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL ctvms.sync_applying = 'on'")
                await conn.execute("UPDATE customers SET office = $1", OFFICE)
            await conn.execute("ANALYZE")
        finally:
            await conn.close()
        self.seed_s = time.perf_counter() - started
        self.central.start()

    async def bill_central(self) -> None:
        """This year's months of every connection, billed up to today (the year updater), with
        the capture triggers off: through them, 300,000 rows took over five minutes to seed."""
        from appliance import db
        from appliance.billing import charges
        from appliance.settings import Settings
        from appliance.sync.state import applying

        assert self.central is not None
        settings = Settings.from_env(
            {},
            data_dir=self.central.data_dir,
            database_url=_db_url(self.db_name),
            role="central",
            office_code=OFFICE,
            locale="en",
            smtp_host="",
            advertise=False,
        )
        db.configure(settings)
        async with db.write_transaction(), applying():
            await charges.ensure_year(settings)

    def enroll_code(self) -> str:
        assert self.central is not None
        out = self.central.ctvms("sync", "office", OFFICE, "--name", "Bench Office").stdout
        if not (m := re.search(r"one-time enrollment code (\S+)", out)):
            out = self.central.ctvms("sync", "office", OFFICE, "--new-code").stdout
            m = re.search(r"one-time enrollment code (\S+)", out)
        if not m:
            raise BenchError(f"no enrollment code in: {out}")
        return m.group(1)

    # -- the box --------------------------------------------------------------------------

    async def new_box(self, name: str) -> Any:
        from appliance import cli, db
        from appliance.jobs.queue import configure_queue
        from appliance.settings import Settings
        from appliance.sync import client

        folder = self.ctx.work_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        # The smallest payment is one currency unit, so an owing customer can pay in parts.
        settings = Settings.from_env(
            {"CTVMS_MIN_PAYMENT": "1"},
            data_dir=folder,
            office_code=OFFICE,
            locale="en",
            smtp_host="",
            advertise=False,
        )
        db.configure(settings)
        # A real queue nobody consumes: invoice PDFs and sync kicks wait instead of running inline.
        configure_queue(settings)
        await cli.migrate(settings)
        assert self.central is not None
        await client.enroll(settings, central_url=self.central.base_url, code=self.enroll_code())
        return settings

    async def use_box(self) -> None:
        from appliance import db

        db.configure(self.box)

    async def ensure(self) -> None:
        """Central with its office, and a box that has bootstrapped from it (timed)."""
        if self.box is not None:
            await self.use_box()
            return
        import httpx

        from appliance.sync import client
        from appliance.sync.tables import SyncChange

        await self.start_central()
        self.box = await self.new_box("box")
        async with httpx.AsyncClient(timeout=client.TIMEOUT_S) as http:
            started = time.perf_counter()
            rows = await client.bootstrap(http)
            bootstrap_s = time.perf_counter() - started
        started = time.perf_counter()
        await client.sync_once()  # the round after it: nothing new
        after_s = time.perf_counter() - started
        customers = await SyncChange.raw("SELECT count(*) AS n FROM customers")
        self.bootstrap = {
            "rows": rows,
            "customers": int(customers[0]["n"]),
            "bootstrap_s": bootstrap_s,
            "rows_per_sec": rows / bootstrap_s if bootstrap_s else 0,
            "first_round_ms": after_s * 1000,
            "central_seed_s": self.seed_s,
        }

    def close(self) -> None:
        if self.central is not None:
            with contextlib.suppress(Exception):
                self.central.stop()
            self.central = None
            drop = f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'
            # From a thread of its own: this may be called inside the runner's event loop.
            with contextlib.suppress(Exception), ThreadPoolExecutor(max_workers=1) as pool:
                pool.submit(asyncio.run, _pg(drop)).result()


def _setup(ctx: Context) -> Setup:
    if "sync" not in ctx.extra:
        ctx.extra["sync"] = Setup(ctx)
    return ctx.extra["sync"]


async def _restore(ctx: Context) -> None:
    """Point this process's tables back at the benchmark office for later benchmarks."""
    from appliance import db

    eng = db.engine()
    if isinstance(eng, db.ApplianceSQLiteEngine):
        await eng.close_idle()
    if "billing_settings" in ctx.extra:
        db.configure(ctx.extra["billing_settings"])


# -- benchmarks --------------------------------------------------------------------------------


async def sync_bootstrap(ctx: Context) -> Result:
    setup = _setup(ctx)
    try:
        await setup.ensure()
    finally:
        await _restore(ctx)
    figures = dict(setup.bootstrap)
    return Result(
        figures=figures,
        runs=[figures],
        note=(
            f"a new box of a {setup.customers}-customer office (one year of billing) takes "
            "central's snapshot over HTTP, then one round; one run"
        ),
    )


async def _edit(count: int, tag: str) -> None:
    """``count`` changes: one field of ``count`` customers edited (the triggers log each)."""
    from appliance.db import write_transaction
    from appliance.sync.tables import SyncChange

    async with write_transaction():
        rows = await SyncChange.raw(
            "SELECT id FROM customers ORDER BY random() LIMIT {}", int(count)
        )
        for row in rows:
            await SyncChange.raw("UPDATE customers SET area = {} WHERE id = {}", tag, row["id"])


async def sync_round(ctx: Context) -> Result:
    from appliance.sync import client
    from appliance.sync.state import pending_count

    setup = _setup(ctx)
    runs = []
    try:
        await setup.ensure()
        for run in range(ctx.options.runs):
            changed: list[float] = []
            for n in range(max(3, ROUNDS // 4)):
                await _edit(ROUND_CHANGES, f"Area {run}-{n}")
                if await pending_count() != ROUND_CHANGES:
                    raise BenchError("the edits did not make exactly 100 pending changes")
                started = time.perf_counter()
                summary = await client.sync_once()
                changed.append((time.perf_counter() - started) * 1000)
                if summary["pushed"] != ROUND_CHANGES:
                    raise BenchError(f"a round pushed {summary['pushed']}, not 100")
            idle: list[float] = []
            for _ in range(ROUNDS):
                started = time.perf_counter()
                await client.sync_once()
                idle.append((time.perf_counter() - started) * 1000)
            runs.append(
                {
                    "changes_p50_ms": statistics.median(changed),
                    "changes_p95_ms": percentile(changed, 95),
                    "noop_p50_ms": statistics.median(idle),
                    "noop_p95_ms": percentile(idle, 95),
                }
            )
    finally:
        await _restore(ctx)
    figures = {k: statistics.median([r[k] for r in runs]) for k in runs[0]}
    return Result(
        figures=figures,
        runs=runs,
        note=(
            f"sync_once() on the bootstrapped box: rounds pushing {ROUND_CHANGES} customer edits "
            f"({max(3, ROUNDS // 4)} a run), and {ROUNDS} rounds with nothing to do a run"
        ),
    )


class _Counter:
    """The person at the counter, as the web layer's identity describes them."""

    id = None
    role = "agent"
    display_name = "Bench counter"


async def _take_payments(settings: Any, count: int) -> int:
    """``count`` payments (fewer if the office's dues run out), 10.00 or the rest of a due each,
    round-robin over the owing customers, as the counter takes them while offline."""
    from appliance.billing import service as billing

    owing = {str(r["customer_id"]): int(r["amount_due"]) for r in await billing.dues()}
    taken = 0
    while owing and taken < count:
        for customer_id in list(owing):
            if taken >= count:
                break
            amount = min(1000, owing[customer_id])
            await billing.record_payment(
                customer_id,
                {"amount": f"{amount // 100}.{amount % 100:02d}", "mode": "cash", "service": "all"},
                actor=_Counter(),
                settings=settings,
            )
            taken += 1
            owing[customer_id] -= amount
            if owing[customer_id] <= 0:
                del owing[customer_id]
    return taken


async def sync_push(ctx: Context) -> Result:
    setup = _setup(ctx)
    try:
        await setup.ensure()
        from appliance.sync import client
        from appliance.sync.state import pending_count

        wanted = min(PAYMENTS, max(10, setup.customers // 2))
        started = time.perf_counter()
        taken = await _take_payments(setup.box, wanted)
        taking_s = time.perf_counter() - started
        pending = await pending_count()
        started = time.perf_counter()
        summary = await client.sync_once()
        push_s = time.perf_counter() - started
        if await pending_count():
            raise BenchError("changes left unsent after the push")
    finally:
        await _restore(ctx)
        setup.close()
    figures = {
        "payments": taken,
        "changes": pending,
        "push_s": push_s,
        "changes_per_sec": pending / push_s if push_s else 0,
        "dead_letters": summary["dead_letters"],
        "taking_s": taking_s,
    }
    return Result(
        figures=figures,
        runs=[figures],
        note=(
            f"{taken} payments recorded offline on the bootstrapped box ({pending} changes: "
            "payments, allocations, months paid, expiry dates), then one sync_once(); one run"
        ),
    )


BENCHMARKS = [
    Benchmark(
        "sync_bootstrap",
        "new box bootstraps from central (PostgreSQL)",
        sync_bootstrap,
        target="report time and rows",
        order=600,
    ),
    Benchmark(
        "sync_round",
        "sync round with 100 changes / with none",
        sync_round,
        target="≤ 120 ms / ≤ 20 ms",
        check=lambda f: f["changes_p50_ms"] <= 120 and f["noop_p50_ms"] <= 20,
        order=601,
    ),
    Benchmark(
        "sync_push",
        "push of 10,000 offline payments to central",
        sync_push,
        target="≤ 4.5 s",
        check=lambda f: f["push_s"] <= 4.5,
        order=602,
    ),
]
