"""The foundation's pages: the bare page for scale, customer search, the admin dashboard, and the
server's memory once everything else has run."""

from __future__ import annotations

import time
from urllib.parse import quote_plus

from appliance.invoices import renderer
from bench.core import Benchmark, Context, Result
from bench.measure import page_benchmark

# Partial, accent-free, lower-case pieces of names the demo office uses: some match thousands
# of customers (paging and counting), some a handful.
SEARCHES = [
    "joao sil",
    "maria",
    "conc",
    "ferreira",
    "ana cos",
    "luis mach",
    "barbosa ram",
    "jose",
    "gonc",
    "patricia alm",
    "sonia",
    "iuri fre",
]


def search_path(i: int) -> str:
    return "/customers?q=" + quote_plus(SEARCHES[i % len(SEARCHES)])


async def hello(ctx: Context) -> Result:
    return await page_benchmark(ctx, "/healthz")


async def search(ctx: Context) -> Result:
    # HTMX asks for the results fragment while the admin types; that is the request measured.
    result = await page_benchmark(
        ctx, search_path, cookies=ctx.admin_cookies, headers={"HX-Request": "true"}
    )
    result.note = f"{len(SEARCHES)} partial names in turn; " + result.note
    return result


async def dashboard(ctx: Context) -> Result:
    return await page_benchmark(ctx, "/", cookies=ctx.admin_cookies)


def _total_kib(kib: dict[str, int]) -> int:
    return kib["VmRSS"] + kib.get("worker_VmRSS", 0) + kib["children_VmRSS"]


def memory(ctx: Context) -> Result:
    """Twice: right after the other benchmarks (the load's last invoices may still be
    rendering, in a child process of the worker), then at rest, once the rendering child has
    ended after its idle time. The target is read at rest; both totals count every process."""
    kib = ctx.server.memory_kib()
    figures = {"web_rss_mb": kib["VmRSS"] / 1024, "web_peak_mb": kib["VmHWM"] / 1024}
    if "worker_VmRSS" in kib:
        figures["worker_rss_mb"] = kib["worker_VmRSS"] / 1024
        figures["worker_peak_mb"] = kib["worker_VmHWM"] / 1024
    figures["children_rss_mb"] = kib["children_VmRSS"] / 1024
    figures["after_load_total_mb"] = _total_kib(kib) / 1024
    deadline = time.monotonic() + renderer.IDLE_S + 30
    while kib["children_VmRSS"] and time.monotonic() < deadline:
        time.sleep(0.5)
        kib = ctx.server.memory_kib()
    figures["rest_web_mb"] = kib["VmRSS"] / 1024
    figures["rest_worker_mb"] = kib.get("worker_VmRSS", 0) / 1024
    figures["total_rss_mb"] = _total_kib(kib) / 1024
    note = "VmRSS/VmHWM from /proc after every other benchmark, then at rest"
    if kib["children_VmRSS"]:
        note += " (a child still running)"
    if "worker_VmRSS" not in kib:
        note += "; worker not running"
    return Result(figures=figures, note=note)


BENCHMARKS = [
    Benchmark("hello", "bare page GET /healthz (scale)", hello, order=0),
    Benchmark(
        "search",
        "customer search, partial name (admin)",
        search,
        target="p95 ≤ 20 ms",
        check=lambda f: f["p95_ms"] <= 20,
        order=10,
    ),
    Benchmark(
        "dashboard",
        "admin dashboard GET /",
        dashboard,
        target="p95 ≤ 50 ms, ≥ 25% of hello req/s",
        check=lambda f: f["p95_ms"] <= 50 and f.get("pct_hello", 0) >= 25,
        order=11,
    ),
    Benchmark(
        "memory",
        "resident memory, web + worker (+ rendering child), at rest",
        memory,
        target="≤ 250 MB",
        check=lambda f: f["total_rss_mb"] <= 250,
        order=10_000,
    ),
]
