"""Path traversal: every route whose path takes free text (invoice numbers, job and template
names, static file paths) fed with ``..``, encoded and doubly encoded variants, backslashes
and absolute paths, as an admin (who may download everything): a 4xx answer, and nothing from
outside what the route serves."""

from __future__ import annotations

import re

from appliance.web.app import STATIC_DIR
from tests.security.caller import Caller
from tests.security.matrix import routes

SENTINEL = "SENTINEL-outside-the-served-folders-4242"
# Text of files a traversal could reach: the sentinel beside the database, the app's own code
# (the parent of the static folder), the database itself and the system's password file.
OUTSIDE = (SENTINEL, "def create_app", "SQLite format 3", "root:x:0:0")

PAYLOADS = [
    "../secret.txt",
    "../../secret.txt",
    "..%2fsecret.txt",
    "..%2F..%2Fsecret.txt",
    "%2e%2e%2fsecret.txt",
    "%2e%2e/%2e%2e/secret.txt",
    "..%252f..%252fsecret.txt",
    "....//....//secret.txt",
    "..\\..\\secret.txt",
    "..%5c..%5csecret.txt",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "ctvms.sqlite3",
    "../ctvms.sqlite3",
    "..%2fapp.py",
    "../app.py",
    "%00../secret.txt",
]
_PARAM = re.compile(r"\{(\w+):(str|path)\}")


def _paths(template: str, payload: str) -> list[str]:
    base = _PARAM.sub(lambda m: payload, template, count=1)
    # Any other parameter keeps a harmless value.
    base = re.sub(r"\{\w+:\w+\}", "x", base)
    return [base, base + ".pdf"] if base.endswith(payload) else [base]


def test_no_route_serves_anything_outside_its_folder(world, world_app, web):
    (world.settings.data_dir / "secret.txt").write_text(SENTINEL)
    caller = Caller(web, world, "admin", fresh_sessions=False)
    failures = []
    targets = [r for r in routes(world_app) if not r.is_write and _PARAM.search(r.template)]
    assert {"/invoices/{number:str}", "/invoices/{number:str}/pdf"} <= {r.template for r in targets}
    for route in targets:
        for payload in PAYLOADS:
            for path in _paths(route.template, payload):
                response = caller.send(route, path)
                failures += _problems(f"{route} {path}", response)
    assert not failures, "\n".join(failures)


def _problems(label: str, response) -> list[str]:
    problems = []
    status = response.status_code
    if not 400 <= status < 500 and not (status in (301, 302, 303, 307) and _local(response)):
        problems.append(f"{label}: {status}")
    body = response.content.decode("latin-1")
    problems += [f"{label}: shows {mark!r}" for mark in OUTSIDE if mark in body]
    return problems


def _local(response) -> bool:
    location = response.headers.get("location", "")
    return location.startswith("/") and not location.startswith("//")


def test_static_files_stay_inside_the_static_folder(world, web):
    (world.settings.data_dir / "secret.txt").write_text(SENTINEL)
    assert (STATIC_DIR.parent / "app.py").exists()
    assert web.get("/static/app.css").status_code == 200
    failures = []
    for payload in [*PAYLOADS, "..", "%2e%2e", "../web/app.py", "..%2fweb%2fapp.py"]:
        response = web.get(f"/static/{payload}", follow_redirects=False)
        failures += _problems(f"/static/{payload}", response)
    assert not failures, "\n".join(failures)
