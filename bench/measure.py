"""HTTP measurements against the running server: latency one request at a time, and requests
per second under concurrent load (with ``wrk`` when it is installed, else the asyncio client of
:mod:`bench.wire`).

Every run is bounded: it stops after ``options.seconds`` or its request budget, whichever comes
first. A request that does not answer 200 stops the benchmark: figures of errors mean nothing.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import Callable

from bench.core import Context, Figures, Result, median_figures, percentile
from bench.server import HOST
from bench.wire import Connection

PathChoice = str | Callable[[int], str]
MAX_REQUESTS_PER_RUN = 20_000


class BenchError(RuntimeError):
    """A measured request failed."""


def _path(choice: PathChoice, i: int) -> str:
    return choice(i) if callable(choice) else choice


def _headers(cookies: dict[str, str] | None, headers: dict[str, str] | None) -> dict[str, str]:
    result = dict(headers or {})
    if cookies:
        result["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return result


def _connect(ctx: Context, cookies, headers) -> Connection:
    return Connection(HOST, ctx.server.port, _headers(cookies, headers))


async def _get(conn: Connection, path: str) -> None:
    status, body = await conn.get(path)
    if status != 200:
        raise BenchError(f"GET {path} answered {status}: {body[:300]!r}")


async def latency_run(
    ctx: Context,
    path: PathChoice,
    *,
    cookies: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Figures:
    """One run: requests one after another on one connection; p50 and p95 in ms."""
    samples: list[float] = []
    async with _connect(ctx, cookies, headers) as conn:
        await _get(conn, _path(path, 0))  # open the connection, warm the page
        deadline = time.perf_counter() + ctx.options.seconds
        i = 0
        while time.perf_counter() < deadline and i < MAX_REQUESTS_PER_RUN:
            i += 1
            target = _path(path, i)
            start = time.perf_counter()
            await _get(conn, target)
            samples.append((time.perf_counter() - start) * 1000)
    return {
        "p50_ms": percentile(samples, 50),
        "p95_ms": percentile(samples, 95),
        "requests": float(len(samples)),
    }


async def throughput_asyncio(
    ctx: Context,
    path: PathChoice,
    *,
    cookies: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> float:
    """Requests per second with ``options.concurrency`` keep-alive connections."""
    concurrency = ctx.options.concurrency
    conns = [_connect(ctx, cookies, headers) for _ in range(concurrency)]
    done = 0
    try:
        await asyncio.gather(*(_get(c, _path(path, 0)) for c in conns))
        start = time.perf_counter()
        deadline = start + ctx.options.seconds

        async def client(conn: Connection, offset: int) -> None:
            nonlocal done
            i = offset
            while time.perf_counter() < deadline and done < MAX_REQUESTS_PER_RUN:
                await _get(conn, _path(path, i))
                done += 1
                i += concurrency

        await asyncio.gather(*(client(c, k) for k, c in enumerate(conns)))
        return done / (time.perf_counter() - start)
    finally:
        for conn in conns:
            await conn.close()


def wrk_path() -> str | None:
    return shutil.which("wrk")


def throughput_wrk(
    ctx: Context,
    path: str,
    *,
    cookies: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> float:
    """Requests per second measured by ``wrk`` (one thread, ``options.concurrency``
    connections, whole seconds)."""
    seconds = max(1, round(ctx.options.seconds))
    command = [
        str(wrk_path()),
        "-t1",
        f"-c{ctx.options.concurrency}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
    ]
    for name, value in _headers(cookies, headers).items():
        command += ["-H", f"{name}: {value}"]
    command.append(ctx.server.url(path))
    out = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 30, check=True
    ).stdout
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        raise BenchError(f"wrk: {m.group(1)} failed responses for {path}")
    if "Socket errors:" in out:
        raise BenchError(f"wrk: socket errors for {path}:\n{out}")
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise BenchError(f"wrk printed no rate:\n{out}")
    return float(m.group(1))


async def page_benchmark(
    ctx: Context,
    path: PathChoice,
    *,
    cookies: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    rate_path: str | None = None,
) -> Result:
    """The usual page figures: the median over ``options.runs`` runs of p50/p95 latency and of
    requests/s, and that rate as a share of the bare page's. wrk repeats one URL: ``rate_path``
    (default: the first path)."""
    runs: list[Figures] = []
    tool = "wrk" if ctx.options.use_wrk and wrk_path() else "asyncio"
    fixed = rate_path or _path(path, 0)
    for _ in range(ctx.options.runs):
        figures = await latency_run(ctx, path, cookies=cookies, headers=headers)
        if tool == "wrk":
            rps = await asyncio.to_thread(
                throughput_wrk, ctx, fixed, cookies=cookies, headers=headers
            )
        else:
            rps = await throughput_asyncio(ctx, path, cookies=cookies, headers=headers)
        figures["rps"] = rps
        runs.append(figures)
    figures = median_figures(runs)
    if ctx.hello_rps:
        figures["pct_hello"] = 100 * figures["rps"] / ctx.hello_rps
    return Result(figures=figures, runs=runs, note=f"req/s by {tool}, c={ctx.options.concurrency}")
