"""Backups of the office's data folder, taken while the box serves, and their restore.

A backup holds a consistent copy of the SQLite database, made with SQLite's online backup API
in one read transaction (in WAL mode writers carry on meanwhile), plus every other file of the
data folder: invoices, the secret key, keys other features keep there. Other SQLite files found
in the folder are copied the same safe way; the job queue, backups and temporary files are left
out. It is written under a hidden name and renamed when complete, so a half-written backup
never looks like a good one. Layout, as a folder or the same folder inside a ``.tar.gz``::

    ctvms-backup-MM-20261203T031500Z/
        manifest.json          what, when, which office and schema, checksums
        database.sqlite3       the database (rollback-journal mode: one self-contained file)
        data/                  the rest of the data folder (invoices/, secret_key, ...)

Restore stages and checks everything first (archive members, checksum, integrity, schema), then
moves the current files into ``before-restore-<time>/`` in the data folder and swaps the backup's
in. The database is written into the live file through the backup API, which SQLite applies as
one transaction: a crash leaves the old or the new database, never a mix. The web server and the
worker hold a shared lock on ``.in-use.lock`` while they run, which is how restore knows that
they are up; they wait for a restore that holds the lock exclusively.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import hashlib
import importlib
import json
import logging
import os
import pkgutil
import re
import shutil
import sqlite3
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance import clock
from appliance.errors import Conflict, DomainError
from appliance.i18n import gettext as _
from appliance.settings import Settings

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
DATABASE = "database.sqlite3"
DATA = "data"
LOCK_FILE = ".in-use.lock"
ASIDE_PREFIX = "before-restore-"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
_NAME = re.compile(
    r"^ctvms-(?:backup-(?P<code>[A-Z0-9]{2,6})-(?P<stamp>\d{8}T\d{6}Z)"
    r"|nightly-(?P<ncode>[A-Z0-9]{2,6})-(?P<day>\d{4}-\d{2}-\d{2}))(?P<ext>\.tar\.gz)?$"
)


class BackupFailed(DomainError):
    status_code = 500
    code = "backup_failed"


class RestoreRefused(Conflict):
    """The restore would do harm: the box is running, or the backup does not fit it."""

    code = "restore_refused"


@dataclass(frozen=True)
class Backup:
    path: Path
    kind: str  # "manual" or "nightly"
    office_code: str
    created_at: dt.datetime | None  # manual backups: from the name, UTC
    day: dt.date | None  # nightly backups: the office day they are for

    @property
    def size(self) -> int:
        if self.path.is_file():
            return self.path.stat().st_size
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())


def parse_name(path: Path) -> Backup | None:
    match = _NAME.match(path.name)
    if not match:
        return None
    if match["stamp"]:
        created = dt.datetime.strptime(match["stamp"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        return Backup(path, "manual", match["code"], created, None)
    return Backup(path, "nightly", match["ncode"], None, dt.date.fromisoformat(match["day"]))


def list_backups(folder: Path) -> list[Backup]:
    """The backups in ``folder``, oldest first (nightly ones by day, manual ones by time)."""
    if not folder.is_dir():
        return []
    found = [b for p in folder.iterdir() if (b := parse_name(p)) is not None]

    def when(b: Backup) -> dt.datetime:
        if b.created_at is not None:
            return b.created_at
        assert b.day is not None
        return dt.datetime.combine(b.day, dt.time(), dt.UTC)

    return sorted(found, key=lambda b: (when(b), b.path.name))


# -- the in-use lock --------------------------------------------------------------------------


@contextlib.contextmanager
def in_use(settings: Settings) -> Iterator[None]:
    """Mark the data folder as in use while a server or worker runs (a shared lock).

    The lock is released by the kernel when the process ends, even by ``kill -9``, so it never
    goes stale. It is best effort: a folder where the lock cannot be made must not stop the
    server, so trouble is only logged.
    """
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(settings.data_dir / LOCK_FILE, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:
        log.warning("could not create the in-use lock; restore cannot see this process")
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("a restore is in progress; waiting for it to finish")
            fcntl.flock(fd, fcntl.LOCK_SH)
        except OSError:
            log.warning("could not take the in-use lock; restore cannot see this process")
        yield
    finally:
        os.close(fd)


def is_in_use(settings: Settings) -> bool:
    """True while a web server or worker holds the data folder (see :func:`in_use`)."""
    path = settings.data_dir / LOCK_FILE
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextlib.contextmanager
def _exclusive(settings: Settings, *, force: bool) -> Iterator[None]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.data_dir / LOCK_FILE, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            if not force:
                raise RestoreRefused(
                    _(
                        "The web server or the worker is running on this data folder. Stop "
                        "them first (systemctl stop ctvms.target), or restore with --force."
                    )
                ) from exc
            log.warning("restoring with --force while the server or worker is running")
        yield
    finally:
        os.close(fd)


# -- copying ----------------------------------------------------------------------------------


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC
    except OSError:
        return False


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def copy_sqlite(source: Path, target: Path) -> None:
    """Copy a live SQLite database to a new self-contained file, consistently.

    ``pages=-1`` copies everything in one step, inside one read transaction: the copy is the
    database as of one moment even while other processes write, and in WAL mode they are not
    held up. The copy is switched to rollback-journal mode so it is a single file.
    """
    src = _connect(source)
    try:
        dst = _connect(target)
        try:
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode = DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def integrity(path: Path) -> str:
    conn = _connect(path)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return "; ".join(str(r[0]) for r in rows)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            _fsync(Path(dirpath) / name)
        _fsync(Path(dirpath))


def _excluded(settings: Settings) -> set[Path]:
    """Paths of the data folder that are not backed up or restored: the live database (copied
    on its own), the job queue (transient: old jobs must not run again), the backups."""
    paths = {settings.queue_path, settings.backup_path}
    for base in (settings.sqlite_path, settings.queue_path):
        paths |= {base, *(base.with_name(base.name + s) for s in _SQLITE_SIDE_FILES)}
    return {p.absolute() for p in paths}


def _data_entries(settings: Settings) -> list[Path]:
    """Top-level entries of the data folder that belong in a backup."""
    if not settings.data_dir.is_dir():
        return []
    skip = _excluded(settings)
    entries = []
    for entry in sorted(settings.data_dir.iterdir()):
        if entry.name.startswith(".") or entry.name.startswith(ASIDE_PREFIX):
            continue
        if parse_name(entry) is not None:  # backups kept in the data folder itself
            continue
        # A folder holding the database or the queue (a custom CTVMS_DATABASE_URL) is left
        # alone: moving it aside on restore would move the live database with it.
        if any(p == entry.absolute() or entry.absolute() in p.parents for p in skip):
            continue
        entries.append(entry)
    return entries


def _copy_entry(source: Path, target: Path) -> int:
    """Copy a file or folder of the data folder; SQLite files through the backup API."""
    count = 0
    if source.is_dir() and not source.is_symlink():
        target.mkdir(mode=0o700)
        for child in sorted(source.iterdir()):
            if child.name.endswith(_SQLITE_SIDE_FILES) and _is_sqlite(
                child.with_name(child.name.rsplit("-", 1)[0])
            ):
                continue
            count += _copy_entry(child, target / child.name)
        return count
    if not source.is_file():
        return 0  # sockets, fifos, dangling links: nothing to keep
    if _is_sqlite(source):
        copy_sqlite(source, target)
    else:
        shutil.copy2(source, target)
    return 1


def _migration_ids(database: Path) -> list[str]:
    conn = _connect(database)
    try:
        rows = conn.execute("SELECT name FROM migration ORDER BY name").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()
    return [r[0] for r in rows]


def _table_counts(database: Path) -> dict[str, int]:
    conn = _connect(database)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                " ORDER BY name"
            )
        ]
        return {n: conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}  # noqa: S608
    finally:
        conn.close()


def known_migration_ids() -> set[str]:
    """IDs of the migrations this version of CTVMS ships."""
    from appliance import migrations

    ids = set()
    for mod in pkgutil.iter_modules(migrations.__path__):
        module = importlib.import_module(f"{migrations.__name__}.{mod.name}")
        if isinstance(getattr(module, "ID", None), str):
            ids.add(module.ID)
    return ids


def _version() -> str:
    from appliance.lan.advertise import version

    return version()


# -- backup -----------------------------------------------------------------------------------


def _require_sqlite(settings: Settings) -> None:
    if not settings.is_sqlite:
        raise BackupFailed(
            _("Only an appliance on SQLite is backed up this way; back central up with pg_dump.")
        )


def _write_backup(settings: Settings, staging: Path, *, kind: str, created: dt.datetime) -> dict:
    """Fill ``staging`` with the database, the data files and the manifest."""
    staging.mkdir(mode=0o700)
    database = staging / DATABASE
    if not settings.sqlite_path.exists():
        raise BackupFailed(_("There is no database at %(path)s.", path=str(settings.sqlite_path)))
    copy_sqlite(settings.sqlite_path, database)
    check = integrity(database)
    if check != "ok":
        raise BackupFailed(_("The database copy failed its integrity check: %(r)s", r=check))
    (staging / DATA).mkdir(mode=0o700)
    files = sum(
        _copy_entry(entry, staging / DATA / entry.name) for entry in _data_entries(settings)
    )
    manifest = {
        "format": FORMAT,
        "kind": kind,
        "created_at": created.isoformat(),
        "office_code": settings.office_code,
        "office_name": settings.office_name,
        "role": settings.role,
        "version": _version(),
        "database": {
            "file": DATABASE,
            "bytes": database.stat().st_size,
            "sha256": _sha256(database),
            "integrity": check,
            "migrations": _migration_ids(database),
            "rows": _table_counts(database),
        },
        "files": files,
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    _fsync_tree(staging)
    return manifest


def _finish(staging: Path, final: Path, *, archive: bool) -> None:
    """Move a complete staging folder to its final name (as a folder or a .tar.gz)."""
    if archive:
        partial = final.with_name(f".{final.name}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            # The manifest first, so a reader finds it without inflating the database.
            tar.add(staging / MANIFEST, arcname=f"{final.name.removesuffix('.tar.gz')}/{MANIFEST}")
            for child in sorted(staging.iterdir()):
                if child.name != MANIFEST:
                    tar.add(child, arcname=f"{final.name.removesuffix('.tar.gz')}/{child.name}")
        _fsync(partial)
        os.replace(partial, final)
        shutil.rmtree(staging)
    else:
        os.replace(staging, final)
    _fsync(final.parent)


def create_backup(
    settings: Settings,
    dest: Path,
    *,
    archive: bool = True,
    kind: str = "manual",
    day: dt.date | None = None,
) -> dict[str, Any]:
    """Back the office up into ``dest`` and return a summary (path, bytes, manifest).

    Safe while the web server and the worker run. ``archive`` makes one ``.tar.gz``; otherwise
    a folder. Nightly backups are named after the office ``day``; manual ones after the time.
    """
    _require_sqlite(settings)
    created = clock.now().replace(microsecond=0)
    if kind == "nightly":
        assert day is not None
        name = f"ctvms-nightly-{settings.office_code}-{day.isoformat()}"
    else:
        name = f"ctvms-backup-{settings.office_code}-{created:%Y%m%dT%H%M%SZ}"
    dest = dest.expanduser().absolute()
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / (name + ".tar.gz" if archive else name)
    if final.exists():
        raise Conflict(_("A backup named %(name)s exists already.", name=final.name))
    staging = dest / f".{name}.partial"
    if staging.exists():
        shutil.rmtree(staging)  # left by a backup that was killed
    try:
        manifest = _write_backup(settings, staging, kind=kind, created=created)
        _finish(staging, final, archive=archive)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            final.with_name(f".{final.name}.partial").unlink()
        raise
    summary = {
        "path": str(final),
        "bytes": Backup(final, kind, settings.office_code, created, day).size,
        "database_bytes": manifest["database"]["bytes"],
        "files": manifest["files"],
        "created_at": manifest["created_at"],
    }
    log.info(
        "backup written",
        extra={"path": final, "bytes": summary["bytes"], "files": manifest["files"], "kind": kind},
    )
    return summary


# -- restore ----------------------------------------------------------------------------------


def _safe_members(tar: tarfile.TarFile, src: Path) -> list[tarfile.TarInfo]:
    """Only plain files and folders with relative names that stay inside the staging folder."""
    members = tar.getmembers()
    for member in members:
        parts = Path(member.name).parts
        if member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
            raise RestoreRefused(
                _("%(path)s holds an unsafe entry: %(name)s", path=str(src), name=member.name)
            )
    return members


def _unpack(src: Path, staging: Path) -> Path:
    """Bring the backup at ``src`` into ``staging``; return its root folder."""
    if src.is_dir():
        root = staging / src.name
        shutil.copytree(src, root)
        return root
    if not src.is_file():
        raise RestoreRefused(_("There is no backup at %(path)s.", path=str(src)))
    try:
        with tarfile.open(src, mode="r:*") as tar:
            members = _safe_members(tar, src)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, members=members, filter="data")
            else:  # Python before 3.11.4: the members were checked by hand above
                tar.extractall(staging, members=members)  # noqa: S202
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise RestoreRefused(
            _("%(path)s is not a readable backup: %(error)s", path=str(src), error=str(exc))
        ) from exc
    roots = [p for p in staging.iterdir() if p.is_dir()]
    if len(roots) != 1:
        raise RestoreRefused(_("%(path)s is not a CTVMS backup.", path=str(src)))
    return roots[0]


def _check(settings: Settings, root: Path, *, force: bool) -> dict[str, Any]:
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise RestoreRefused(_("The backup has no readable manifest.")) from exc
    if manifest.get("format") != FORMAT:
        raise RestoreRefused(_("This backup was made in a format this version cannot read."))
    database = root / DATABASE
    if not database.is_file() or _sha256(database) != manifest["database"]["sha256"]:
        raise RestoreRefused(_("The database in the backup is missing or damaged."))
    check = integrity(database)
    if check != "ok":
        raise RestoreRefused(_("The database in the backup is damaged: %(r)s", r=check))
    newer = set(_migration_ids(database)) - known_migration_ids()
    if newer:
        raise RestoreRefused(
            _("This backup comes from a newer version of CTVMS; update the box first.")
        )
    if manifest.get("office_code") != settings.office_code and not force:
        raise RestoreRefused(
            _(
                "This backup is of office %(theirs)s but this box is office %(ours)s; check "
                "CTVMS_OFFICE_CODE, or restore with --force.",
                theirs=manifest.get("office_code"),
                ours=settings.office_code,
            )
        )
    return manifest


def _restore_database(staged: Path, live: Path, aside: Path) -> None:
    if live.exists():
        copy_sqlite(live, aside / DATABASE)
    else:
        # Side files of a database that is gone would be replayed into the new one.
        for suffix in _SQLITE_SIDE_FILES:
            with contextlib.suppress(FileNotFoundError):
                live.with_name(live.name + suffix).unlink()
        live.parent.mkdir(parents=True, exist_ok=True)
    src = _connect(staged)
    try:
        dst = _connect(live)
        try:
            # One transaction on the live file: readers see the old or the new database.
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode = WAL")
        finally:
            dst.close()
    finally:
        src.close()
    _fsync(live.parent)


def _require_owner(settings: Settings) -> None:
    """Root restoring into a folder the services own would leave files they cannot write."""
    if os.geteuid() != 0 or not settings.data_dir.exists():
        return
    owner = settings.data_dir.stat().st_uid
    if owner != 0:
        raise RestoreRefused(
            _(
                "Restore as the user the services run as (uid %(uid)s), for example with the "
                "ctvms command the installer puts in /usr/local/bin; as root, the restored "
                "files would not be writable by the services.",
                uid=owner,
            )
        )


def _new_aside(data_dir: Path, stamp: str) -> Path:
    """A new folder for what a restore replaces: two restores within one second (the time in
    its name) each get their own, ``-2``, ``-3`` and so on after the first."""
    aside, n = data_dir / f"{ASIDE_PREFIX}{stamp}", 1
    while True:
        try:
            aside.mkdir(mode=0o700)
            return aside
        except FileExistsError:
            n += 1
            aside = data_dir / f"{ASIDE_PREFIX}{stamp}-{n}"


def restore_backup(settings: Settings, src: Path, *, force: bool = False) -> dict[str, Any]:
    """Bring back the backup at ``src`` (a folder or a ``.tar.gz``) into the data folder.

    Refuses while the server or worker runs, for another office's backup, or for one from a
    newer schema, unless ``force``. What was there before is kept in ``before-restore-<time>/``.
    """
    _require_sqlite(settings)
    _require_owner(settings)
    src = src.expanduser().absolute()
    stamp = f"{clock.now():%Y%m%dT%H%M%SZ}"
    with _exclusive(settings, force=force):
        staging = settings.data_dir / f".restore-{stamp}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        try:
            root = _unpack(src, staging)
            manifest = _check(settings, root, force=force)
            aside = _new_aside(settings.data_dir, stamp)
            (aside / DATA).mkdir(mode=0o700)
            _restore_database(root / DATABASE, settings.sqlite_path, aside)
            # Files: everything the backup covers moves aside, then the backup's come in.
            for entry in _data_entries(settings):
                os.replace(entry, aside / DATA / entry.name)
            restored = sorted((root / DATA).iterdir()) if (root / DATA).is_dir() else []
            for entry in restored:
                os.replace(entry, settings.data_dir / entry.name)
            _fsync(settings.data_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    summary = {
        "restored_from": str(src),
        "backup_created_at": manifest["created_at"],
        "office_code": manifest["office_code"],
        "previous_kept_in": str(aside),
        "entries": len(restored),
    }
    log.info("backup restored", extra={"source": src, "aside": aside})
    return summary


# -- the nightly job --------------------------------------------------------------------------


def prune(folder: Path, *, keep: int) -> list[Path]:
    """Delete all but the ``keep`` most recent nightly backups in ``folder``."""
    nightly = [b for b in list_backups(folder) if b.kind == "nightly"]
    removed = []
    for backup in nightly[: max(0, len(nightly) - keep)]:
        if backup.path.is_dir():
            shutil.rmtree(backup.path)
        else:
            backup.path.unlink()
        removed.append(backup.path)
    return removed


def _nightly(settings: Settings, today: dt.date) -> dict[str, Any]:
    folder = settings.backup_path
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".nightly.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return {"day": today.isoformat(), "created": False, "reason": "already running"}
        existing = [b for b in list_backups(folder) if b.kind == "nightly" and b.day == today]
        summary: dict[str, Any] = {"day": today.isoformat(), "created": not existing}
        if existing:
            summary["path"] = str(existing[0].path)
        else:
            made = create_backup(settings, folder, archive=True, kind="nightly", day=today)
            summary.update(path=made["path"], bytes=made["bytes"])
        removed = prune(folder, keep=settings.backup_keep)
        summary["removed"] = [p.name for p in removed]
        summary["kept"] = [b.path.name for b in list_backups(folder) if b.kind == "nightly"]
        return summary
    finally:
        os.close(fd)


async def nightly_backup(settings: Settings, today: dt.date | None = None) -> dict[str, Any]:
    """Take today's backup into ``CTVMS_BACKUP_DIR`` and keep the last ``CTVMS_BACKUP_KEEP``.

    Runs once per office day: a second call the same day only prunes. On central (PostgreSQL)
    it does nothing; the database there is backed up by its own tools.
    """
    if not settings.is_sqlite:
        return {"created": False, "reason": "not sqlite"}
    day = today or clock.today(settings.tz)
    summary = await asyncio.to_thread(_nightly, settings, day)
    log.info(
        "nightly backup",
        extra={
            "day": summary["day"],
            "made": summary["created"],
            "removed": len(summary.get("removed", [])),
            "kept": len(summary.get("kept", [])),
        },
    )
    return summary
