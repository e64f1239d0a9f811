"""``ctvms jobs``: run a scheduled job now (boxes without a worker, tests), list the jobs."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

EXIT_FAILED = 1
EXIT_BUSY = 75  # EX_TEMPFAIL: running elsewhere, try again later


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def cmd_run(args: argparse.Namespace) -> None:
    from appliance import logs
    from appliance.cli import _run, _settings
    from appliance.jobs import registry  # noqa: F401  (registers the jobs)
    from appliance.jobs.runner import JOBS, run_job

    logs.setup()
    if args.name not in JOBS:
        sys.exit(f"ctvms: unknown job {args.name!r}; known: {', '.join(JOBS)}")
    settings = _settings()
    outcome = _run(settings, lambda: run_job(settings, args.name, trigger="cli", today=args.today))
    if outcome.status == "skipped":
        print(f"{args.name}: already running ({outcome.holder}); not started.", file=sys.stderr)
        sys.exit(EXIT_BUSY)
    print(json.dumps({"job": args.name, "status": outcome.status, "result": outcome.result}))
    if outcome.status != "ok":
        print(f"{args.name} failed: {outcome.error}", file=sys.stderr)
        sys.exit(EXIT_FAILED)


def cmd_list(args: argparse.Namespace) -> None:
    from appliance import i18n
    from appliance.cli import _run, _settings
    from appliance.jobs import registry  # noqa: F401
    from appliance.jobs.runner import job_overview

    settings = _settings()
    rows = _run(settings, job_overview)
    with i18n.use_locale("en"):
        for row in rows:
            job, last = row["job"], row["last"]
            when = (
                f"last {last['status']} at {last['started_at'].isoformat(timespec='seconds')}"
                if last
                else "never run"
            )
            running = ", running now" if row["running"] else ""
            print(f"{job.name:16} {when}{running}  [{job.schedule()}]")


def add_commands(sub: argparse._SubParsersAction) -> None:
    jobs = sub.add_parser("jobs", help="scheduled jobs").add_subparsers(
        dest="jobs_cmd", required=True
    )
    sp = jobs.add_parser("run", help="run a job now (it waits for nothing; busy jobs are skipped)")
    sp.add_argument("name", help="job name, see `ctvms jobs list`")
    sp.add_argument(
        "--today", type=_date, default=None, help="run as if the office day were YYYY-MM-DD"
    )
    sp.set_defaults(func=cmd_run)
    jobs.add_parser("list", help="the jobs, their schedule and last run").set_defaults(
        func=cmd_list
    )
