"""The database's data version: changes with every commit by anyone, and is None where it cannot
be trusted (PostgreSQL)."""

from __future__ import annotations

import sqlite3

import pytest

from appliance.customers.tables import CrfCounter, Customer
from appliance.data_version import data_version, read_one
from tests.conftest import USE_PG, make_settings

pytestmark = pytest.mark.skipif(USE_PG, reason="SQLite's PRAGMA data_version")


async def test_every_commit_changes_it_and_reads_do_not(settings):
    first = data_version(settings)
    assert first is not None and data_version(settings) == first
    await Customer.count()  # a read through the engine
    assert data_version(settings) == first
    await CrfCounter.insert(CrfCounter(office_code="ZZ", last=1))  # a write through the engine
    second = data_version(settings)
    assert second != first
    other = sqlite3.connect(settings.sqlite_path)  # another process, say the worker
    with other:
        other.execute("UPDATE crf_counters SET last = last + 1")
    other.close()
    assert data_version(settings) not in (first, second)


def test_a_restored_file_never_repeats_an_older_value(settings, tmp_path):
    before = data_version(settings)
    copy = tmp_path / "restored.sqlite3"
    source = sqlite3.connect(settings.sqlite_path)
    target = sqlite3.connect(copy)
    source.backup(target)
    source.close()
    target.close()
    copy.replace(settings.sqlite_path)  # what a restore does: a new file in its place
    assert data_version(settings) != before


def test_none_without_a_database_file_or_on_postgresql(tmp_path):
    missing = make_settings(tmp_path)
    assert data_version(missing) is None
    assert read_one(missing, "SELECT 1") is None
    central = make_settings(tmp_path, database_url="postgresql://postgres@127.0.0.1:5432/x")
    assert data_version(central) is None


def test_read_one_reads_what_is_committed_now(settings):
    assert read_one(settings, "SELECT COUNT(*) FROM customers") == (0,)
    assert read_one(settings, "SELECT id FROM customers WHERE crf = ?", "none") is None
