"""The ``ctvms`` command."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import importlib
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from appliance import db, i18n, logs
from appliance.settings import Settings, SettingsError


def _settings() -> Settings:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.exit(f"ctvms: {exc}")
    i18n.set_default_locale(settings.locale)
    return settings


def _run(settings: Settings, factory: Callable[[], Awaitable[Any]]) -> Any:
    db.configure(settings)

    async def main() -> Any:
        try:
            return await factory()
        finally:
            eng = db.engine()
            if isinstance(eng, db.ApplianceSQLiteEngine):
                await eng.close_idle()

    return asyncio.run(main())


async def migrate(settings: Settings) -> None:
    """Apply every pending migration (and switch SQLite to WAL)."""
    from piccolo.apps.migrations.commands.forwards import run_forwards

    eng = db.engine()
    await db.enable_wal(eng)
    result = await run_forwards(app_name="ctvms")
    if not result.success:
        raise SystemExit(f"ctvms: migration failed: {result.message}")


def cmd_migrate(args: argparse.Namespace) -> None:
    settings = _settings()
    _run(settings, lambda: migrate(settings))


def cmd_init(args: argparse.Namespace) -> None:
    """Migrate and create the first admin if there is none (used by ``make run``)."""
    from appliance.accounts import service as accounts

    settings = _settings()

    async def init() -> tuple[str, str] | None:
        await migrate(settings)
        return await accounts.ensure_first_admin()

    created = _run(settings, init)
    print()
    if created:
        username, password = created
        print("First admin account created. Log in and choose a new password:")
        print(f"  username: {username}")
        print(f"  password: {password}")
    else:
        print("Staff accounts exist already; log in with yours.")


def cmd_users_create(args: argparse.Namespace) -> None:
    from appliance.accounts import service as accounts
    from appliance.errors import ValidationFailed

    settings = _settings()
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    try:
        _run(
            settings,
            lambda: accounts.create_staff(
                username=args.username,
                role=args.role,
                password=password,
                must_change_password=args.temporary,
            ),
        )
    except ValidationFailed as exc:
        sys.exit("ctvms: " + "; ".join(f"{k}: {v}" for k, v in exc.errors.items()))
    print(f"Created {args.role} {args.username}.")


def cmd_config(args: argparse.Namespace) -> None:
    settings = _settings()
    for env, value, help_text in settings.described():
        print(f"{env}={value}")
        if args.verbose:
            print(f"    {help_text}")


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from appliance.backup.service import in_use
    from appliance.lan.advertise import advertising
    from appliance.web.app import create_app

    logs.setup()
    settings = _settings()
    workers = getattr(args, "workers", 1)
    if workers < 1:
        sys.exit("ctvms: --workers must be 1 or more")
    if workers > 1 and not settings.database_url.startswith("postgres"):
        sys.exit(
            "ctvms: --workers above 1 needs PostgreSQL (a central instance): an office box on "
            "SQLite serves from one process"
        )
    options = {"host": args.host, "port": args.port, "log_level": "warning"}
    # The in-use lock tells `ctvms restore` the server runs; mDNS lets tablets find it.
    with in_use(settings), advertising(settings, host=args.host, port=args.port):
        if workers == 1:
            uvicorn.run(
                create_app(settings, pg_pool=True), workers=1, proxy_headers=False, **options
            )
        else:
            # Each worker process builds its own app from the same environment. Sessions live
            # in the database and the job queue in Redis (CTVMS_REDIS_URL), so any worker, on
            # any host, can serve any request.
            uvicorn.run(
                "appliance.web.app:server_app",
                factory=True,
                workers=workers,
                proxy_headers=False,
                **options,
            )


def cmd_worker(args: argparse.Namespace) -> None:
    from appliance.backup.service import in_use
    from appliance.jobs import tasks
    from appliance.jobs.queue import configure_queue

    logs.setup()
    settings = _settings()
    db.configure(settings)
    huey = configure_queue(settings)
    tasks.startup_catch_up()  # a box that was off catches up before anything else
    consumer = huey.create_consumer(
        workers=args.workers,
        periodic=True,
        initial_delay=0.1,
        backoff=1.15,
        max_delay=2.0,
        check_worker_health=True,
    )
    with in_use(settings):
        consumer.run()


def cmd_run(args: argparse.Namespace) -> None:
    """Serve the web UI and run the worker beside it until interrupted."""
    worker = subprocess.Popen([sys.executable, "-m", "appliance.cli", "worker"])
    try:
        print(f"Serving on http://{args.host}:{args.port}/ (Ctrl+C stops)", flush=True)
        cmd_serve(args)
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            worker.kill()


def cmd_demo(args: argparse.Namespace) -> None:
    from appliance import demo

    settings = _settings()
    summary = _run(
        settings,
        lambda: demo.fill(settings, customers=args.customers, years=args.years, seed=args.seed),
    )
    for key, value in summary.items():
        print(f"{key}: {value}")


# Features add their own sub-commands: each module has ``add_commands(subparsers)``.
COMMAND_MODULES: list[str] = [
    "appliance.lan.cli",
    "appliance.backup.cli",
    "appliance.jobs.cli",
    "appliance.sync.cli",
]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ctvms", description="CTVMS appliance")
    sub = p.add_subparsers(dest="command", required=True)

    def serve_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--host", default=os.environ.get("CTVMS_HOST", "0.0.0.0"))  # noqa: S104
        sp.add_argument("--port", type=int, default=int(os.environ.get("CTVMS_PORT", "8000")))

    sp = sub.add_parser("serve", help="serve the web UI and API")
    serve_opts(sp)
    sp.add_argument(
        "--workers",
        type=int,
        default=1,
        help="web worker processes (central on PostgreSQL only; an office box serves from one)",
    )
    sp.set_defaults(func=cmd_serve)
    sp = sub.add_parser("run", help="serve and run the worker (what make run does)")
    serve_opts(sp)
    sp.set_defaults(func=cmd_run)
    sp = sub.add_parser("worker", help="run the background job consumer")
    sp.add_argument("--workers", type=int, default=2)
    sp.set_defaults(func=cmd_worker)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("init", help="migrate and create the first admin").set_defaults(func=cmd_init)
    sp = sub.add_parser("config", help="print the effective settings, secrets masked")
    sp.add_argument("-v", "--verbose", action="store_true", help="with help text")
    sp.set_defaults(func=cmd_config)
    users = sub.add_parser("users", help="staff accounts").add_subparsers(
        dest="users_cmd", required=True
    )
    sp = users.add_parser("create", help="create a staff account (password from stdin)")
    sp.add_argument("--role", choices=("owner", "admin", "agent"), required=True)
    sp.add_argument("--username", required=True)
    sp.add_argument(
        "--temporary", action="store_true", help="require a password change at first login"
    )
    sp.set_defaults(func=cmd_users_create)
    sp = sub.add_parser("demo", help="fill the office with demo plans, customers and history")
    sp.add_argument("--customers", type=int, default=500)
    sp.add_argument("--years", type=int, default=5)
    sp.add_argument("--seed", type=int, default=42)
    sp.set_defaults(func=cmd_demo)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
