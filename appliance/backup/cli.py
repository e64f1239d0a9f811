"""``ctvms backup``, ``ctvms restore`` and ``ctvms backups`` (list what a folder holds)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance.backup import service
from appliance.errors import DomainError


def _settings():
    from appliance.cli import _settings

    return _settings()


def cmd_backup(args: argparse.Namespace) -> None:
    settings = _settings()
    try:
        summary = service.create_backup(settings, Path(args.dest), archive=args.format == "tar.gz")
    except DomainError as exc:
        sys.exit(f"ctvms: {exc.message}")
    print(f"Backup written to {summary['path']} ({summary['bytes']:,} bytes).")


def cmd_restore(args: argparse.Namespace) -> None:
    from appliance.cli import _run, migrate

    settings = _settings()
    try:
        summary = service.restore_backup(settings, Path(args.src), force=args.force)
    except DomainError as exc:
        sys.exit(f"ctvms: {exc.message}")
    print(f"Restored the backup of {summary['backup_created_at']} ({summary['office_code']}).")
    print(f"What was there before is kept in {summary['previous_kept_in']}.")
    # A backup from an older version gets the migrations it lacks.
    _run(settings, lambda: migrate(settings))


def cmd_backups(args: argparse.Namespace) -> None:
    settings = _settings()
    folder = Path(args.folder) if args.folder else settings.backup_path
    found = service.list_backups(folder)
    if not found:
        print(f"No backups in {folder}.")
        return
    for backup in found:
        when = backup.day.isoformat() if backup.day else f"{backup.created_at:%Y-%m-%d %H:%M}Z"
        print(f"{when:<18} {backup.kind:<8} {backup.size:>14,}  {backup.path}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser(
        "backup", help="copy the database, invoices and keys into DEST (safe while serving)"
    )
    sp.add_argument("dest", metavar="DEST", help="folder to write the backup into")
    sp.add_argument(
        "--format",
        choices=("tar.gz", "dir"),
        default="tar.gz",
        help="one .tar.gz file (default) or a plain folder",
    )
    sp.set_defaults(func=cmd_backup)

    sp = sub.add_parser(
        "restore", help="bring back a backup (a .tar.gz or folder) into the data folder"
    )
    sp.add_argument("src", metavar="SRC", help="the backup .tar.gz file or folder")
    sp.add_argument(
        "--force",
        action="store_true",
        help="restore even while the server runs or when the office code differs",
    )
    sp.set_defaults(func=cmd_restore)

    sp = sub.add_parser("backups", help="list the backups in a folder (default: CTVMS_BACKUP_DIR)")
    sp.add_argument("folder", nargs="?", help="folder to look in")
    sp.set_defaults(func=cmd_backups)
