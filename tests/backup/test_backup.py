"""Backups taken while the box writes, restore round trips and refusals, nightly retention.

Backups are SQLite-only (central uses PostgreSQL's own tools), so these tests always run on a
SQLite office, whatever CTVMS_TEST_DB says.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest

from appliance import clock, db
from appliance.backup import service as backup
from appliance.jobs.queue import configure_queue
from appliance.settings import Settings
from tests.conftest import make_settings, run
from tests.helpers import make_customer

INVOICE = b"%PDF-1.7 invoice INV-1 " + bytes(range(256))


@pytest.fixture
def office(sqlite_template, tmp_path) -> Settings:
    """A migrated SQLite office with an invoice file and a stored secret key."""
    clock.reset()
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(sqlite_template, data / "ctvms.sqlite3")
    settings = make_settings(data)
    db.configure(settings)
    configure_queue(settings, immediate=True)
    (settings.invoices_dir / "2026").mkdir(parents=True)
    (settings.invoices_dir / "2026" / "INV-1.pdf").write_bytes(INVOICE)
    (data / "secret_key").write_text("stored-secret-key")
    yield settings
    clock.reset()


def names(settings: Settings, path: Path | None = None) -> set[str]:
    with sqlite3.connect(path or settings.sqlite_path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM customers")}


def unpack(archive: Path, into: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    (root,) = into.iterdir()
    return root


# -- consistency while writing ----------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sqlite3, sys, pathlib
    db, stop = sys.argv[1], pathlib.Path(sys.argv[2])
    conn = sqlite3.connect(db, timeout=30, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 30000")
    n = 0
    while not stop.exists():
        # Two rows per transaction: a copy holding one without the other is torn.
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO probe (n, pair, pad) VALUES (?, ?, randomblob(512))",
                     (n + 1, n // 2))
        conn.execute("INSERT INTO probe (n, pair, pad) VALUES (?, ?, randomblob(512))",
                     (n + 2, n // 2))
        conn.execute("COMMIT")
        n += 2
    print(n)
    """
)


def probe_count(path: Path) -> int:
    with sqlite3.connect(path, timeout=30) as conn:
        return conn.execute("SELECT count(*) FROM probe").fetchone()[0]


def wait_until(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_a_backup_taken_while_another_process_writes_is_one_consistent_moment(office, tmp_path):
    live = office.sqlite_path
    with sqlite3.connect(live) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute("CREATE TABLE probe (n INTEGER PRIMARY KEY, pair INTEGER, pad BLOB)")
        # Some megabytes, so the copy takes a while and the writer commits meanwhile.
        conn.execute("CREATE TABLE ballast (pad BLOB)")
        conn.executemany("INSERT INTO ballast VALUES (randomblob(4096))", [()] * 3000)
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(live), str(stop)], stdout=subprocess.PIPE, text=True
    )
    try:
        wait_until(lambda: probe_count(live) >= 200)
        before = probe_count(live)
        summary = backup.create_backup(office, tmp_path / "dest")
        after = probe_count(live)
        wait_until(lambda: probe_count(live) > after)  # the writer was never held up for good
    finally:
        stop.touch()
        out, _ = writer.communicate(timeout=60)
    assert writer.returncode == 0, "the writer failed (database locked?)"
    assert int(out) >= after

    root = unpack(Path(summary["path"]), tmp_path / "unpacked")
    copy = root / backup.DATABASE
    assert backup.integrity(copy) == "ok"
    with sqlite3.connect(copy) as conn:
        rows = conn.execute("SELECT n, pair FROM probe ORDER BY n").fetchall()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    count = len(rows)
    # Exactly the rows of the first count/2 transactions: the state at one moment in time.
    assert [n for n, _ in rows] == list(range(1, count + 1))
    assert count % 2 == 0
    assert all(pair == (n - 1) // 2 for n, pair in rows)
    assert before <= count <= after
    # Invoices and the secret key travel with the database; the live WAL does not.
    assert (root / "data" / "invoices" / "2026" / "INV-1.pdf").read_bytes() == INVOICE
    assert (root / "data" / "secret_key").read_text() == "stored-secret-key"
    assert not list(root.rglob("*-wal")) and not list(root.rglob("*-shm"))
    manifest = json.loads((root / backup.MANIFEST).read_text())
    assert manifest["office_code"] == office.office_code
    assert manifest["database"]["integrity"] == "ok"
    assert manifest["database"]["rows"]["probe"] == count
    assert set(manifest["database"]["migrations"]) <= backup.known_migration_ids()


def test_the_archive_is_private_and_only_appears_complete(office, tmp_path):
    summary = backup.create_backup(office, tmp_path / "dest")
    path = Path(summary["path"])
    assert path.name.startswith(f"ctvms-backup-{office.office_code}-")
    assert path.name.endswith(".tar.gz")
    assert path.stat().st_mode & 0o077 == 0  # it holds the secret key
    assert [p.name for p in (tmp_path / "dest").iterdir()] == [path.name]  # no leftovers
    with tarfile.open(path) as tar:
        assert tar.getnames()[0].endswith("/" + backup.MANIFEST)


def test_other_sqlite_files_are_copied_safely_and_the_queue_is_left_out(office, tmp_path):
    extra = office.data_dir / "keys" / "box.sqlite3"
    extra.parent.mkdir()
    # Left open, so the row is still in the WAL file, not in the main file.
    holder = sqlite3.connect(extra, isolation_level=None)
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("CREATE TABLE k (v TEXT)")
    holder.execute("INSERT INTO k VALUES ('key material')")
    office.queue_path.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    try:
        assert Path(f"{extra}-wal").stat().st_size > 0
        summary = backup.create_backup(office, tmp_path / "dest", archive=False)
    finally:
        holder.close()
    root = Path(summary["path"])
    assert root.is_dir()
    with sqlite3.connect(root / "data" / "keys" / "box.sqlite3") as conn:
        assert conn.execute("SELECT v FROM k").fetchall() == [("key material",)]
    assert not (root / "data" / office.queue_path.name).exists()
    assert not (root / "data" / "ctvms.sqlite3").exists()  # copied once, as database.sqlite3


# -- restore ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["tar.gz", "dir"])
def test_restore_brings_back_the_database_and_files_and_keeps_the_previous_aside(
    office, tmp_path, fmt
):
    kept = run(make_customer(office, name="Ana Before"))
    summary = backup.create_backup(office, tmp_path / "dest", archive=fmt == "tar.gz")
    run(make_customer(office, name="Bruno After"))
    (office.invoices_dir / "2026" / "INV-1.pdf").unlink()
    (office.invoices_dir / "2026" / "INV-2.pdf").write_bytes(b"later invoice")
    (office.data_dir / "secret_key").write_text("changed-key")
    assert names(office) == {"Ana Before", "Bruno After"}

    result = backup.restore_backup(office, Path(summary["path"]))

    assert names(office) == {"Ana Before"}
    assert (office.invoices_dir / "2026" / "INV-1.pdf").read_bytes() == INVOICE
    assert not (office.invoices_dir / "2026" / "INV-2.pdf").exists()
    assert (office.data_dir / "secret_key").read_text() == "stored-secret-key"
    with sqlite3.connect(office.sqlite_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # The application reads the restored data through its own engine too.
    from appliance.customers import service as customers

    assert run(customers.get_customer(kept["id"]))["name"] == "Ana Before"

    aside = Path(result["previous_kept_in"])
    assert aside.parent == office.data_dir and aside.name.startswith("before-restore-")
    assert names(office, aside / backup.DATABASE) == {"Ana Before", "Bruno After"}
    assert (aside / "data" / "invoices" / "2026" / "INV-2.pdf").read_bytes() == b"later invoice"
    assert (aside / "data" / "secret_key").read_text() == "changed-key"
    assert not list(office.data_dir.glob(".restore-*"))
    # The source is untouched and can be restored again.
    assert Path(summary["path"]).exists()


def test_a_restore_in_the_same_second_as_the_last_keeps_its_own_previous_aside(office, tmp_path):
    run(make_customer(office, name="Dora"))
    summary = backup.create_backup(office, tmp_path / "dest")
    # A restore a moment ago took the folder named after this second (and, to stay certain
    # on a slow machine, the next few seconds' names are taken too).
    start = clock.now()
    taken = [
        office.data_dir / f"before-restore-{start + dt.timedelta(seconds=s):%Y%m%dT%H%M%SZ}"
        for s in range(10)
    ]
    for folder in taken:
        folder.mkdir()
    result = backup.restore_backup(office, Path(summary["path"]))
    aside = Path(result["previous_kept_in"])
    assert aside not in taken and aside.name.endswith("-2")
    assert names(office, aside / backup.DATABASE) == {"Dora"}
    assert all(not any(folder.iterdir()) for folder in taken)
    assert names(office) == {"Dora"}


def test_restore_onto_a_new_empty_card(office, tmp_path):
    run(make_customer(office, name="Carla"))
    summary = backup.create_backup(office, tmp_path / "dest")
    fresh = make_settings(tmp_path / "new-card")
    backup.restore_backup(fresh, Path(summary["path"]))
    assert names(fresh) == {"Carla"}
    assert (fresh.invoices_dir / "2026" / "INV-1.pdf").read_bytes() == INVOICE


def test_restore_refuses_another_offices_backup_unless_forced(office, tmp_path):
    summary = backup.create_backup(office, tmp_path / "dest")
    other = make_settings(tmp_path / "other", office_code="ZZ")
    with pytest.raises(backup.RestoreRefused, match="office TS"):
        backup.restore_backup(other, Path(summary["path"]))
    assert not other.sqlite_path.exists()
    backup.restore_backup(other, Path(summary["path"]), force=True)
    assert other.sqlite_path.exists()


def test_restore_refuses_a_backup_from_a_newer_schema(office, tmp_path):
    with sqlite3.connect(office.sqlite_path) as conn:
        conn.execute(
            "INSERT INTO migration (name, app_name, ran_on) "
            "VALUES ('2099-01-01T00:00:00:000000', 'ctvms', '2099-01-01')"
        )
    summary = backup.create_backup(office, tmp_path / "dest")
    run(make_customer(office, name="Still Here"))
    with pytest.raises(backup.RestoreRefused, match="newer version"):
        backup.restore_backup(office, Path(summary["path"]))
    assert "Still Here" in names(office)


def test_restore_refuses_damaged_or_unsafe_archives(office, tmp_path):
    run(make_customer(office, name="Untouched"))
    summary = backup.create_backup(office, tmp_path / "dest")
    good = Path(summary["path"])

    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(backup.RestoreRefused):
        backup.restore_backup(office, truncated)

    evil = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload"
    payload.write_text("x")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(payload, arcname="../../escaped")
    with pytest.raises(backup.RestoreRefused, match="unsafe"):
        backup.restore_backup(office, evil)
    assert not (office.data_dir.parent / "escaped").exists()

    # A database that does not match its manifest.
    folder = Path(backup.create_backup(office, tmp_path / "dest2", archive=False)["path"])
    with sqlite3.connect(folder / backup.DATABASE) as conn:
        conn.execute("UPDATE customers SET name = 'Tampered'")
    with pytest.raises(backup.RestoreRefused, match="damaged"):
        backup.restore_backup(office, folder)

    with pytest.raises(backup.RestoreRefused, match="no backup"):
        backup.restore_backup(office, tmp_path / "nothing-here.tar.gz")
    assert names(office) == {"Untouched"}
    assert not list(office.data_dir.glob("before-restore-*"))


def test_central_on_postgresql_is_not_backed_up_this_way(tmp_path):
    central = make_settings(
        tmp_path, role="central", database_url="postgresql://postgres@127.0.0.1:5432/none"
    )
    with pytest.raises(backup.BackupFailed, match="pg_dump"):
        backup.create_backup(central, tmp_path / "dest")
    assert asyncio.run(backup.nightly_backup(central)) == {
        "created": False,
        "reason": "not sqlite",
    }


# -- the commands, against a running server ---------------------------------------------------


def test_backup_online_and_restore_refused_while_the_server_runs(office, tmp_path):
    from bench.server import ServerProcess

    run(make_customer(office, name="Served"))
    server = ServerProcess(
        office.data_dir, env={"CTVMS_OFFICE_CODE": "TS", "CTVMS_ADVERTISE": "off"}
    )
    dest = tmp_path / "dest"
    with server:
        server.start()
        wait_until(lambda: backup.is_in_use(office))
        done = server.ctvms("backup", str(dest))
        assert "Backup written to" in done.stdout
        (archive,) = dest.glob("*.tar.gz")

        refused = server.ctvms("restore", str(archive), check=False)
        assert refused.returncode != 0
        assert "running" in refused.stderr

        forced = server.ctvms("restore", "--force", str(archive))
        assert "Restored the backup" in forced.stdout
        import httpx

        assert httpx.get(server.url("/healthz"), timeout=5).status_code == 200
    assert not backup.is_in_use(office)
    done = server.ctvms("restore", str(archive))
    assert "kept in" in done.stdout
    assert names(office) == {"Served"}
    listing = server.ctvms("backups", str(dest)).stdout
    assert archive.name in listing


# -- the nightly job --------------------------------------------------------------------------


async def test_nightly_backups_keep_the_last_n_and_run_once_a_day(office, tmp_path):
    settings = make_settings(office.data_dir, backup_keep=3)
    first = dt.date(2026, 12, 1)
    manual = backup.create_backup(settings, settings.backup_path)  # never pruned
    results = []
    for offset in range(5):
        results.append(await backup.nightly_backup(settings, first + dt.timedelta(days=offset)))
    assert all(r["created"] for r in results)
    kept = [b for b in backup.list_backups(settings.backup_path) if b.kind == "nightly"]
    assert [b.day for b in kept] == [first + dt.timedelta(days=d) for d in (2, 3, 4)]
    assert results[-1]["kept"] == [b.path.name for b in kept]
    assert results[3]["removed"] == [f"ctvms-nightly-TS-{first}.tar.gz"]
    assert Path(manual["path"]).exists()

    again = await backup.nightly_backup(settings, first + dt.timedelta(days=4))
    assert again["created"] is False and again["path"] == str(kept[-1].path)

    # The backups folder inside the data folder is not copied into the next backup.
    with tarfile.open(kept[-1].path) as tar:
        assert not [n for n in tar.getnames() if "/data/backups" in n]
    # Each nightly backup is a good one.
    root = unpack(kept[-1].path, tmp_path / "check")
    assert backup.integrity(root / backup.DATABASE) == "ok"


async def test_nightly_backup_defaults_to_the_office_day_and_the_data_folder(office):
    summary = await backup.nightly_backup(office)
    assert office.backup_path == office.data_dir / "backups"
    assert summary["day"] == clock.today(office.tz).isoformat()
    assert Path(summary["path"]).parent == office.data_dir / "backups"


def test_the_backup_settings_are_read_from_the_environment(tmp_path):
    env = {"CTVMS_DATA_DIR": str(tmp_path)}
    defaults = Settings.from_env(env)
    assert defaults.backup_keep == 7
    assert defaults.backup_path == tmp_path / "backups"
    custom = Settings.from_env(
        {**env, "CTVMS_BACKUP_DIR": str(tmp_path / "usb"), "CTVMS_BACKUP_KEEP": "2"}
    )
    assert (custom.backup_path, custom.backup_keep) == (tmp_path / "usb", 2)
    from appliance.settings import SettingsError

    with pytest.raises(SettingsError, match="CTVMS_BACKUP_KEEP"):
        Settings.from_env({**env, "CTVMS_BACKUP_KEEP": "0"})


@pytest.mark.skipif(os.geteuid() != 0, reason="the guard is about root")
def test_root_may_not_restore_into_a_data_folder_the_services_own(office, tmp_path):
    summary = backup.create_backup(office, tmp_path / "dest")
    os.chown(office.data_dir, 65534, 65534)  # nobody, standing in for the ctvms user
    with pytest.raises(backup.RestoreRefused, match="uid 65534"):
        backup.restore_backup(office, Path(summary["path"]))
    assert not list(office.data_dir.glob("before-restore-*"))
