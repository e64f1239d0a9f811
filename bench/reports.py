"""Payment reports over the whole demo office (issue 5): the largest report, every paid month of
both services last month (over 20,000 rows in the 20,000-customer office), as Excel and as PDF.

Each report is built in a fresh process of its own (``python -m bench.reports``), the way the
worker builds a large report: the same service call, the queue in immediate mode so the build runs
in that process. The figures are the wall time of the build, the process's peak resident memory
(``ru_maxrss``) and its resident memory before the build (Python and the imports), and for the
PDF the largest peak of its rendering processes (``RUSAGE_CHILDREN``: the largest one child
reached, not their sum) and its page count. ``cpu_s`` is the CPU time of the build in all its
processes: on a machine shared with other work it moves less than the wall time does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.core import Benchmark, Context, Result
from bench.measure import BenchError

ROOT = Path(__file__).resolve().parent.parent


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _report_month(today: Any) -> tuple[int, int]:
    """Last month; in January this month, since the office's billing starts with the year."""
    if today.month == 1:
        return today.year, today.month
    return today.year, today.month - 1


def _cpu_s(resource: Any) -> float:
    """CPU seconds of this process and of its finished children (the rendering processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def build(service: str, classification: str, file_type: str) -> dict[str, Any]:
    """Build one report in this process (run as ``python -m bench.reports``); return figures."""
    import asyncio
    import resource

    from appliance import clock, db, i18n
    from appliance.jobs.queue import configure_queue
    from appliance.reports import service as reports
    from appliance.settings import Settings

    settings = Settings.from_env()
    db.configure(settings)
    configure_queue(settings, immediate=True)
    year, month = _report_month(clock.today(settings.tz))
    data = {
        "service": service,
        "year": year,
        "month": month,
        "classification": classification,
        "file_type": file_type,
    }
    base_mb = _rss_mb()

    async def main() -> dict[str, Any]:
        try:
            with i18n.use_locale("en"):
                return await reports.create_report(data, actor=None, settings=settings)
        finally:
            eng = db.engine()
            if isinstance(eng, db.ApplianceSQLiteEngine):
                await eng.close_idle()

    start = time.perf_counter()
    cpu_start = _cpu_s(resource)
    job = asyncio.run(main())
    seconds = time.perf_counter() - start
    cpu = _cpu_s(resource) - cpu_start
    if job["status"] != "done":
        raise SystemExit(f"report {job['status']}: {job.get('error')}")
    pages = {}
    if file_type == "pdf":
        from pypdf import PdfReader

        pages = {"pages": len(PdfReader(reports.file_path(settings, job)).pages)}
    return {
        "rows": job["rows_total"],
        "size_kib": round(job["size"] / 1024),
        "build_s": seconds,
        "cpu_s": cpu,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "base_mb": base_mb,
        "child_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "period": f"{year:04d}-{month:02d}",
        **pages,
    }


def _measure(ctx: Context, service: str, classification: str, file_type: str) -> Result:
    env = {**ctx.server.env, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "bench.reports", service, classification, file_type],
        env=env,
        cwd=ctx.server.data_dir,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"report build failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    period = figures.pop("period")
    if file_type == "xlsx":
        figures.pop("child_peak_mb")
    return Result(
        figures=figures,
        note=f"{classification} {service} {period}, one build in a fresh process",
    )


def xlsx_report(ctx: Context) -> Result:
    return _measure(ctx, "both", "paid", "xlsx")


def pdf_report(ctx: Context) -> Result:
    return _measure(ctx, "both", "paid", "pdf")


BENCHMARKS = [
    Benchmark(
        "report_xlsx",
        "Excel report, paid, both services, last month",
        xlsx_report,
        target="20,000 rows: ≤ 3 s, peak ≤ 150 MB",
        check=lambda f: f["build_s"] <= 3 and f["peak_mb"] <= 150,
        order=400,
    ),
    Benchmark(
        "report_pdf",
        "PDF report, paid, both services, last month",
        pdf_report,
        target="20,000 rows: ≤ 60 s, peak ≤ 400 MB",
        check=lambda f: f["build_s"] <= 60 and f["peak_mb"] <= 400 and f["child_peak_mb"] <= 400,
        order=401,
    ),
]


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python -m bench.reports SERVICE CLASSIFICATION FILE_TYPE")
    os.environ.setdefault("CTVMS_LOCALE", "en")
    print(json.dumps(build(*sys.argv[1:])))
