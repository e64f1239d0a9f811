"""``ctvms discover``: list the boxes and central instances seen on the LAN."""

from __future__ import annotations

import argparse
import json

from appliance.lan.discover import discover


def cmd_discover(args: argparse.Namespace) -> None:
    found = discover(timeout=args.timeout, interfaces=args.interface or None)
    if args.json:
        print(json.dumps([box.as_dict() for box in found], indent=2))
        return
    if not found:
        print(f"No CTVMS box or central instance answered within {args.timeout:g} s.")
        return
    rows = [("NAME", "ROLE", "OFFICE", "ADDRESS", "PORT", "HOST")]
    rows += [
        (
            box.name,
            box.role,
            box.office,
            ",".join(box.addresses) or "-",
            str(box.port),
            box.server.rstrip("."),
        )
        for box in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def add_commands(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser(
        "discover", help="list the CTVMS boxes and central instances advertised on the LAN"
    )
    sp.add_argument(
        "--timeout", type=float, default=3.0, help="seconds to listen for answers (default 3)"
    )
    sp.add_argument(
        "--interface",
        action="append",
        metavar="IP",
        help="search only through the interface with this IPv4 address (repeatable)",
    )
    sp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sp.set_defaults(func=cmd_discover)
