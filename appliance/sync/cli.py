"""``ctvms sync enroll|once|status`` (a box) and ``ctvms sync office`` (central)."""

from __future__ import annotations

import argparse
import json
import sys

from appliance.cli import _run, _settings


def cmd_enroll(args: argparse.Namespace) -> None:
    from appliance.sync import client

    settings = _settings()
    try:
        result = _run(
            settings,
            lambda: client.enroll(
                settings, central_url=args.central, code=args.code, force=args.force
            ),
        )
    except client.SyncError as exc:
        sys.exit(f"ctvms: {exc}")
    print(f"Enrolled as a box of office {result['office_code']} ({result['office_name']}).")
    print(f"Node id: {result['node_id']}")


def cmd_once(args: argparse.Namespace) -> None:
    from appliance.sync import client

    settings = _settings()
    try:
        summary = _run(settings, lambda: client.sync_once(batch=args.batch))
    except client.SyncError as exc:
        sys.exit(f"ctvms: sync failed: {exc}")
    print(json.dumps(summary, indent=2, default=str))


def cmd_status(args: argparse.Namespace) -> None:
    from appliance.sync import client

    settings = _settings()
    info = _run(settings, client.status)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return
    for key, value in info.items():
        print(f"{key:18} {value}")


def cmd_office(args: argparse.Namespace) -> None:
    from appliance.errors import DomainError
    from appliance.sync import central

    settings = _settings()
    if settings.role != "central":
        sys.exit("ctvms: offices are created on the central instance (CTVMS_ROLE=central)")
    try:
        if args.new_code:
            office = {
                "code": args.code,
                "enroll_code": _run(settings, lambda: central.new_enroll_code(args.code.upper())),
            }
        else:
            office = _run(settings, lambda: central.create_office(args.code, args.name or ""))
    except DomainError as exc:
        sys.exit(f"ctvms: {getattr(exc, 'errors', None) or exc}")
    print(f"Office {office['code']}: one-time enrollment code {office['enroll_code']}")
    # --code=CODE: a code may begin with "-", which "--code -x..." would take for an option.
    print(f"On the box: ctvms sync enroll --central URL --code={office['enroll_code']}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    sync = sub.add_parser("sync", help="sync with the central instance").add_subparsers(
        dest="sync_cmd", required=True
    )
    sp = sync.add_parser("enroll", help="register this box at central with a one-time code")
    sp.add_argument("--central", required=True, help="central's address, https://...")
    sp.add_argument("--code", required=True, help="the office's one-time enrollment code")
    sp.add_argument("--force", action="store_true", help="enroll again (a replacement identity)")
    sp.set_defaults(func=cmd_enroll)
    sp = sync.add_parser("once", help="push pending changes and pull new ones now")
    sp.add_argument("--batch", type=int, default=None, help="changes per push and per pulled page")
    sp.set_defaults(func=cmd_once)
    sp = sync.add_parser("status", help="last success, pending changes, clock offset, errors")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_status)
    sp = sync.add_parser("office", help="central: create an office and print its enrollment code")
    sp.add_argument("code", help="office code (2-6 capital letters or digits)")
    sp.add_argument("--name", help="office name")
    sp.add_argument("--new-code", action="store_true", help="issue a new code for an office")
    sp.set_defaults(func=cmd_office)
