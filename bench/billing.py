"""Billing: recording a payment through the API (the PDF is rendered by the worker, off the
request path), rendering an invoice PDF once WeasyPrint is warm, and the admin's payment-details
page of customers with the longest history."""

from __future__ import annotations

import asyncio
import functools
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bench.core import Benchmark, Context, Result, median_figures, percentile
from bench.measure import BenchError, page_benchmark

MAX_PAYMENTS_PER_RUN = 200
MIN_PAYMENTS_PER_RUN = 20
DETAIL_CUSTOMERS = 12


def _office(ctx: Context) -> Any:
    """The office's settings, with this process's database engine pointing at its data."""
    if "billing_settings" not in ctx.extra:
        from appliance import db

        settings = ctx.settings()
        db.configure(settings)
        ctx.extra["billing_settings"] = settings
    return ctx.extra["billing_settings"]


def _closing(run: Callable[[Context], Awaitable[Result]]) -> Callable[[Context], Awaitable[Result]]:
    """``run``, then this process's pooled database connections closed: their threads would
    otherwise keep the harness from exiting once every benchmark is done."""

    @functools.wraps(run)
    async def closing(ctx: Context) -> Result:
        try:
            return await run(ctx)
        finally:
            if "billing_settings" in ctx.extra:
                from appliance import db

                eng = db.engine()
                if isinstance(eng, db.ApplianceSQLiteEngine):
                    await eng.close_idle()

    return closing


def _token(ctx: Context, client: httpx.Client) -> dict[str, str]:
    r = client.post(
        "/api/v1/auth/token",
        json={"username": ctx.admin_username, "password": ctx.admin_password},
    )
    if r.status_code not in (200, 201):
        raise BenchError(f"no API token: {r.status_code} {r.text[:200]}")
    return {"authorization": f"Bearer {r.json()['access_token']}"}


async def _owing(ctx: Context) -> list[tuple[str, int]]:
    """Customers who owe something, with the whole due (always an acceptable amount)."""
    from appliance.billing import service as billing

    _office(ctx)
    return [(str(r["customer_id"]), r["amount_due"]) for r in await billing.dues()]


def _pay_run(ctx: Context, owing: list[tuple[str, int]]) -> tuple[list[float], int]:
    """Payments one after another for ``options.seconds`` (at least a few, at most a budget);
    each pays one customer's whole due with a fresh Idempotency-Key."""
    samples: list[float] = []
    with httpx.Client(base_url=ctx.server.base_url, timeout=30) as client:
        auth = _token(ctx, client)
        deadline = time.perf_counter() + ctx.options.seconds
        while owing and len(samples) < MAX_PAYMENTS_PER_RUN:
            if len(samples) >= MIN_PAYMENTS_PER_RUN and time.perf_counter() > deadline:
                break
            customer_id, due = owing.pop()
            body = {
                "customer_id": customer_id,
                "amount": f"{due // 100}.{due % 100:02d}",
                "mode": "cash",
                "service": "all",
            }
            started = time.perf_counter()
            r = client.post(
                "/api/v1/payments",
                json=body,
                headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
            )
            elapsed = (time.perf_counter() - started) * 1000
            if r.status_code != 201:
                raise BenchError(f"recordPayment answered {r.status_code}: {r.text[:300]}")
            samples.append(elapsed)
    return samples, len(samples)


async def record_payment(ctx: Context) -> Result:
    owing = await _owing(ctx)
    if not owing:
        raise BenchError("nobody owes anything in this office: no payment to record")
    runs = []
    for _ in range(ctx.options.runs):
        samples, count = await asyncio.to_thread(_pay_run, ctx, owing)
        if not samples:
            break
        runs.append(
            {
                "p50_ms": percentile(samples, 50),
                "p95_ms": percentile(samples, 95),
                "payments": float(count),
            }
        )
    if not runs:
        raise BenchError("no payment recorded")
    return Result(
        figures=median_figures(runs),
        runs=runs,
        note=(
            "POST /api/v1/payments one after another, each a whole due in cash; the invoice "
            "PDF and e-mail are queued for the worker, which renders meanwhile on the same cores"
        ),
    )


async def _some_invoice(ctx: Context) -> str:
    from appliance.billing.tables import Payment

    _office(ctx)
    rows = await Payment.select(Payment.number).order_by(Payment.created_at).limit(1)
    if rows:
        return rows[0]["number"]
    owing = await _owing(ctx)
    if not owing:
        raise BenchError("no invoice in this office and nobody owes anything")
    await asyncio.to_thread(_pay_run, ctx, owing[-1:])
    rows = await Payment.select(Payment.number).order_by(Payment.created_at).limit(1)
    return rows[0]["number"]


def _render_samples(view: dict[str, Any], settings: Any, count: int) -> tuple[list[float], int]:
    from appliance.invoices import render

    size = len(render.render_pdf(view, settings))  # warm-up: fonts, stylesheet, WeasyPrint
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        render.render_pdf(view, settings)
        samples.append((time.perf_counter() - started) * 1000)
    return samples, size


async def invoice_pdf(ctx: Context) -> Result:
    from appliance.billing import service as billing

    settings = _office(ctx)
    view = await billing.invoice_view(await _some_invoice(ctx))
    # The worker renders the PDFs of the payments just recorded: let it finish first.
    await asyncio.to_thread(ctx.server.wait_idle, within=300)
    runs = []
    for _ in range(ctx.options.runs):
        samples, size = await asyncio.to_thread(_render_samples, view, settings, 5)
        runs.append({"median_ms": statistics.median(samples), "pdf_kb": size / 1024})
    return Result(
        figures=median_figures(runs),
        runs=runs,
        note="A4 invoice rendered in this process after one warm-up render; 5 renders a run",
    )


async def _long_histories(ctx: Context) -> list[str]:
    """Customers registered earliest: the most months in their grids."""
    from appliance.customers.tables import Connection

    _office(ctx)
    rows = await Connection.raw(
        "SELECT c.customer, min(c.registered_on) AS first FROM connections c "
        "JOIN customers u ON u.id = c.customer WHERE u.archived_at IS NULL "
        "GROUP BY c.customer ORDER BY first, c.customer LIMIT {}",
        DETAIL_CUSTOMERS,
    )
    return [str(r["customer"]) for r in rows]


async def payment_details(ctx: Context) -> Result:
    from appliance import clock

    ids = await _long_histories(ctx)
    if not ids:
        raise BenchError("no customer to look at")
    year = clock.today(_office(ctx).tz).year
    await asyncio.to_thread(ctx.server.wait_idle, within=300)

    def path(i: int) -> str:
        # Each customer in turn, this year and the four before it.
        return f"/billing?customer={ids[i % len(ids)]}&year={year - (i // len(ids)) % 5}"

    result = await page_benchmark(ctx, path, cookies=ctx.admin_cookies)
    result.note = f"{len(ids)} earliest customers x 5 years in turn; " + result.note
    return result


BENCHMARKS = [
    Benchmark(
        "payment",
        "record a payment, POST /api/v1/payments (PDF off the request path)",
        _closing(record_payment),
        target="p95 ≤ 30 ms",
        check=lambda f: f["p95_ms"] <= 30,
        order=20,
    ),
    Benchmark(
        "invoice_pdf",
        "invoice PDF render, A4, warm",
        _closing(invoice_pdf),
        target="median ≤ 150 ms",
        check=lambda f: f["median_ms"] <= 150,
        order=21,
    ),
    Benchmark(
        "payment_details",
        "payment details page (admin), grid + year's payments",
        _closing(payment_details),
        target="p95 ≤ 50 ms",
        check=lambda f: f["p95_ms"] <= 50,
        order=22,
    ),
]
