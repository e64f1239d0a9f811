"""Fixtures of the security suite: the seeded office of :mod:`tests.security.world`, built once
per session on SQLite and copied into each test's data folder (seeding hashes seven passwords
with argon2, which is slow on purpose), or built afresh per test on PostgreSQL."""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from appliance import db
from appliance.jobs.queue import configure_queue
from tests.conftest import USE_PG, make_settings, run
from tests.security.world import World, build_world


@pytest.fixture(scope="session")
def world_template(sqlite_template, tmp_path_factory) -> tuple[Path, World]:
    data = tmp_path_factory.mktemp("world") / "data"
    data.mkdir()
    shutil.copy(sqlite_template, data / "ctvms.sqlite3")
    settings = make_settings(data)
    db.configure(settings)
    configure_queue(settings, immediate=True)
    world = run(build_world(settings))
    with sqlite3.connect(settings.sqlite_path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return data, world


@pytest.fixture
def world(request, settings) -> World:
    if USE_PG:
        return run(build_world(settings))
    data, template = request.getfixturevalue("world_template")
    for item in data.iterdir():
        if item.name.endswith(("-wal", "-shm")):
            continue
        target = settings.data_dir / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copy(item, target)
    # Building the template pointed the database and the queue at its folder.
    db.configure(settings)
    configure_queue(settings, immediate=True)
    return dataclasses.replace(template, settings=settings)


@pytest.fixture
def world_app(world):
    from appliance.web.app import create_app

    return create_app(world.settings, queue=False)


@pytest.fixture
def web(world_app) -> Iterator[TestClient]:
    with TestClient(world_app, base_url="http://127.0.0.1") as c:
        yield c
