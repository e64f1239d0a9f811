"""``python -m bench``: seed a demo office, serve it as a real process, run every registered
benchmark, print one table and write ``bench/results/latest.json``."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import inspect
import json
import os
import pkgutil
import platform
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import httpx

import bench
from bench.core import Benchmark, Context, Options, Result
from bench.measure import wrk_path
from bench.server import ServerProcess

RESULTS = Path(__file__).parent / "results"
SEED_FILE = "bench-seed.json"
ADMIN_USERNAME = "benchadmin"
COLUMNS = ("p50_ms", "p95_ms", "rps", "pct_hello")


def discover() -> list[Benchmark]:
    """Every ``BENCHMARKS`` list of the modules of the ``bench`` package, in run order."""
    found: list[Benchmark] = []
    for info in pkgutil.iter_modules(bench.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        found.extend(getattr(module, "BENCHMARKS", []))
    names = [b.name for b in found]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise SystemExit(f"bench: benchmark names used twice: {', '.join(sorted(duplicates))}")
    return sorted(found, key=lambda b: (b.order, b.name))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the office -------------------------------------------------------------------------------


def seed(server: ServerProcess, customers: int) -> dict[str, str]:
    """Migrate, create the benchmark's admin and fill the demo office, once per data folder.

    The summary (with the admin's random password) is kept in the folder for later runs."""
    marker = server.data_dir / SEED_FILE
    if marker.exists():
        summary = json.loads(marker.read_text())
        if int(summary.get("customers", -1)) != customers:
            raise SystemExit(
                f"bench: {server.data_dir} holds {summary.get('customers')} demo customers, "
                f"not {customers}; use another --data-dir"
            )
        log(f"reusing the office seeded in {server.data_dir}")
        server.ctvms("migrate")  # the code may have new migrations since it was seeded
        return summary
    start = time.perf_counter()
    password = secrets.token_urlsafe(16)
    server.ctvms("migrate")
    server.ctvms(
        "users",
        "create",
        "--role",
        "admin",
        "--username",
        ADMIN_USERNAME,
        input=password + "\n",
    )
    out = server.ctvms("demo", "--customers", str(customers), timeout=1800).stdout
    summary = dict(re.findall(r"^(\w+): (.*)$", out, flags=re.M))
    summary["customers"] = str(customers)
    summary["admin_password"] = password
    summary["seed_seconds"] = f"{time.perf_counter() - start:.1f}"
    marker.write_text(json.dumps(summary, indent=2))
    log(f"seeded {customers} customers in {summary['seed_seconds']} s")
    return summary


def log_in(server: ServerProcess, username: str, password: str) -> dict[str, str]:
    """Log in through the form like a browser; the cookies of the session."""
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        page = client.get("/login")
        token = re.search(r'name="_csrf_token" value="([^"]+)"', page.text)
        if token is None:
            raise SystemExit("bench: no CSRF token on /login")
        response = client.post(
            "/login",
            data={"login": username, "password": password, "_csrf_token": token.group(1)},
        )
        if response.status_code != 303 or "ctvms_session" not in client.cookies:
            raise SystemExit(f"bench: login failed ({response.status_code})")
        return dict(client.cookies.items())


# -- the machine ------------------------------------------------------------------------------


def machine(note: str) -> dict[str, Any]:
    cpu = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        if m := re.search(r"^model name\s*:\s*(.*)$", text, flags=re.M):
            cpu = m.group(1).strip()
    except OSError:
        pass
    memory_gib = None
    try:
        if m := re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()):
            memory_gib = round(int(m.group(1)) / 1024 / 1024, 1)
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parent,
    ).stdout.strip()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": __import__("sqlite3").sqlite_version,
        "wrk": bool(wrk_path()),
        "commit": commit,
        "note": note,
    }


# -- output -----------------------------------------------------------------------------------


def fmt(name: str, value: float) -> str:
    if name.endswith("_ms"):
        return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"
    if name.endswith("_s"):
        return f"{value:.2f} s"
    if name.endswith("_mb"):
        return f"{value:.0f} MB"
    if name == "rps":
        return f"{value:.0f}"
    if name == "pct_hello":
        return f"{value:.0f}%"
    return f"{value:g}"


def table(benchmarks: list[Benchmark], results: dict[str, dict[str, Any]]) -> str:
    header = ["benchmark", "p50", "p95", "req/s", "of hello", "other figures", "target", "met"]
    rows = [header]
    for b in benchmarks:
        r = results.get(b.name)
        if r is None:
            continue
        figures = r.get("figures", {})
        cells = [b.name]
        cells += [fmt(k, figures[k]) if k in figures else "" for k in COLUMNS]
        other = [
            f"{k}={fmt(k, v)}" for k, v in figures.items() if k not in COLUMNS and k != "requests"
        ]
        cells.append(", ".join(other) if not r.get("error") else "ERROR: " + r["error"][:60])
        cells.append(b.target)
        cells.append({True: "yes", False: "NO", None: ""}[r.get("met")])
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


# -- running ----------------------------------------------------------------------------------


async def run_one(b: Benchmark, ctx: Context) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        outcome = b.run(ctx)
        result: Result = await outcome if inspect.isawaitable(outcome) else outcome
    except Exception as exc:
        log(traceback.format_exc())
        return {
            "title": b.title,
            "target": b.target,
            "error": f"{type(exc).__name__}: {exc}",
            "met": False,
            "seconds": time.perf_counter() - start,
        }
    ctx.results[b.name] = result
    met = b.check(result.figures) if b.check else None
    return {
        "title": b.title,
        "target": b.target,
        "figures": result.figures,
        "runs": result.runs,
        "note": result.note,
        "met": met,
        "seconds": round(time.perf_counter() - start, 2),
    }


async def run_all(benchmarks: list[Benchmark], ctx: Context) -> dict[str, dict[str, Any]]:
    results = {}
    for b in benchmarks:
        log(f"running {b.name}: {b.title}")
        results[b.name] = await run_one(b, ctx)
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--customers", type=int, default=20_000, help="demo office size")
    p.add_argument("--runs", type=int, default=5, help="runs per figure (median reported)")
    p.add_argument("--seconds", type=float, default=2.0, help="length of one run")
    p.add_argument("--concurrency", type=int, default=8, help="clients for requests/s")
    p.add_argument("--only", default="", help="comma-separated benchmark names (hello always)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and stop")
    p.add_argument("--data-dir", type=Path, help="seed here once and reuse on later runs")
    p.add_argument("--no-worker", action="store_true", help="do not start the job worker")
    p.add_argument("--no-wrk", action="store_true", help="measure req/s with httpx even if wrk")
    p.add_argument("--note", default=os.environ.get("BENCH_NOTE", ""), help="machine note")
    p.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    benchmarks = discover()
    if args.list:
        for b in benchmarks:
            print(f"{b.name:<16} {b.title}  [{b.target or 'no target'}]")
        return 0
    if args.only:
        wanted = {"hello", *args.only.split(",")}
        unknown = wanted - {b.name for b in benchmarks}
        if unknown:
            raise SystemExit(f"bench: unknown benchmark(s): {', '.join(sorted(unknown))}")
        benchmarks = [b for b in benchmarks if b.name in wanted]
    options = Options(
        customers=args.customers,
        runs=args.runs,
        seconds=args.seconds,
        concurrency=args.concurrency,
        worker=not args.no_worker,
        use_wrk=not args.no_wrk,
    )
    work = Path(tempfile.mkdtemp(prefix="ctvms-bench-"))
    data_dir = args.data_dir or work / "office"
    started = time.perf_counter()
    with ServerProcess(data_dir, env={"CTVMS_OFFICE_NAME": "Benchmark Office"}) as server:
        demo = seed(server, args.customers)
        server.start()
        if options.worker:
            server.start_worker()
        busy = server.wait_idle()
        log(f"server and worker settled after {busy:.1f} s")
        ctx = Context(
            options=options,
            server=server,
            admin_username=ADMIN_USERNAME,
            admin_password=demo["admin_password"],
            admin_cookies=log_in(server, ADMIN_USERNAME, demo["admin_password"]),
            demo=demo,
            work_dir=work,
        )
        results = asyncio.run(run_all(benchmarks, ctx))
    shutil.rmtree(work, ignore_errors=True)
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(args.note),
        "options": vars(options),
        "customers": args.customers,
        "seconds": round(time.perf_counter() - started, 1),
        "settle_seconds": round(busy, 1),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    m = report["machine"]
    print(
        f"CTVMS benchmarks · {args.customers} customers · {m['cpu_count']} CPUs "
        f"({m['cpu_model'] or 'unknown CPU'}) · Python {m['python']} · commit {m['commit']}"
    )
    if args.note:
        print(f"note: {args.note}")
    print(table(benchmarks, results))
    print(f"results: {args.out}  (a Raspberry Pi 4 is about 3-4x slower than a 2-core x86)")
    return 1 if any(r.get("error") for r in results.values()) else 0
