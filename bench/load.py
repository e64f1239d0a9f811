"""Load: concurrent field agents, customers and admins against the real box, then an audit.

Each client is a loop of its own on one keep-alive connection (httpx), for a fixed time:

- **agents** (bearer tokens, the API a collection app uses) read a customer's due
  (``listPayments``) and record a payment (``recordPayment``) with a fresh ``Idempotency-Key``;
  a request that fails in transit is sent again with the same key, as a real client must;
- **customers** (logged in through the form) view their portal, payments and invoices pages;
- **admins** (logged in) search customers as they type (the HTMX fragment) and open the
  dashboard.

Afterwards the audit reads the database file and the server's logs: every acknowledged payment
must be there exactly once (by its idempotency key and invoice number), no payment may be
recorded that no client was told about (beyond a retried key whose answer was lost in transit),
the invoice serials of each office/year must run 1..N with no gap or repeat, and the logs must
show no "database is locked" and no unexpected error.

``BENCHMARKS`` registers it for ``make bench`` (20 clients, 60 s; ``BENCH_LOAD_CLIENTS`` and
``BENCH_LOAD_SECONDS`` change that). ``tests/reliability/test_load.py`` runs a short version in
``make test`` with no timing assertion.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import sqlite3
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx

from bench.core import Benchmark, Context, Result, percentile
from bench.server import ServerProcess

# Accounts of the load's own users in a benchmark or test office, nothing real.
AGENT_PASSWORD = "load-agent-pass-2026"  # noqa: S105
CUSTOMER_PASSWORD = "load-customer-pass-2026"  # noqa: S105
# Idempotency keys of this process's payments: a data folder reused by an earlier load run holds
# that run's payments too, which the audit must not take for payments nobody was told about.
KEY_PREFIX = f"load-{uuid.uuid4().hex[:8]}-"
PREPARED_FILE = "bench-load-users.json"
SEARCHES = ["joao sil", "maria", "conc", "ferreira", "ana cos", "jose", "gonc", "sonia"]
# Lines of a server log that mean something went wrong during the load.
LOG_PROBLEMS = re.compile(r"database is locked|Traceback|unexpected error| ERROR ", re.I)
PAYMENT_ATTEMPTS = 5


class LoadSetupError(RuntimeError):
    """The office could not be prepared for the load (a login failed, no customer owes)."""


@dataclass
class Cast:
    """Who takes part: API tokens of agents, cookies of customers and admins, and for each
    agent the customers it collects from (disjoint, so two agents never race for one due)."""

    agent_tokens: list[str]
    agent_customers: list[list[str]]
    customer_cookies: list[dict[str, str]]
    admin_cookies: list[dict[str, str]]
    min_payment_minor: int


@dataclass
class Payment:
    key: str
    customer_id: str
    amount: int
    number: str = ""
    lost_in_transit: bool = False


@dataclass
class LoadReport:
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)
    retries: int = 0
    rejected: int = 0
    audit: dict[str, Any] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    def error(self, text: str) -> None:
        if len(self.errors) < 200:
            self.errors.append(text)
        else:
            self.errors[-1] = f"... and more ({text})"

    def table(self) -> list[dict[str, Any]]:
        """Per request type: count, p50 and p95 in ms."""
        rows = []
        for kind, samples in sorted(self.latencies.items()):
            rows.append(
                {
                    "kind": kind,
                    "count": len(samples),
                    "p50_ms": percentile(samples, 50),
                    "p95_ms": percentile(samples, 95),
                }
            )
        return rows


# -- setting the office up -------------------------------------------------------------------


def _csrf(text: str) -> str:
    found = re.search(r'name="_csrf_token" value="([^"]+)"', text)
    if found is None:
        raise LoadSetupError("no CSRF token on the page")
    return found.group(1)


def log_in(base_url: str, login: str, password: str) -> httpx.Client:
    """A client logged in through the form."""
    client = httpx.Client(base_url=base_url, timeout=60)
    answer = client.post(
        "/login",
        data={
            "login": login,
            "password": password,
            "_csrf_token": _csrf(client.get("/login").text),
        },
    )
    if answer.status_code != 303:
        client.close()
        raise LoadSetupError(f"{login} cannot log in ({answer.status_code})")
    return client


def _prepared(server: ServerProcess) -> dict[str, list[str]]:
    """Who was set up in this data folder before (``--data-dir`` reuses it): every wrong
    password counts towards the login lockout, so the load never guesses."""
    path = server.data_dir / PREPARED_FILE
    return json.loads(path.read_text()) if path.exists() else {"agents": [], "customers": []}


def _remember(server: ServerProcess, prepared: dict[str, list[str]]) -> None:
    (server.data_dir / PREPARED_FILE).write_text(json.dumps(prepared, indent=2))


def customer_cookies(
    server: ServerProcess, crf: str, demo_password: str, prepared: dict[str, list[str]]
) -> dict[str, str]:
    """Log a demo customer in, changing the temporary demo password the first time."""
    if crf in prepared["customers"]:
        client = log_in(server.base_url, crf, CUSTOMER_PASSWORD)
    else:
        client = log_in(server.base_url, crf, demo_password)
        form = client.get("/account/password")
        answer = client.post(
            "/account/password",
            data={
                "_csrf_token": _csrf(form.text),
                "current": demo_password,
                "new": CUSTOMER_PASSWORD,
                "confirm": CUSTOMER_PASSWORD,
            },
        )
        if answer.status_code != 200:
            raise LoadSetupError(f"customer {crf}: password change answered {answer.status_code}")
        prepared["customers"].append(crf)
        _remember(server, prepared)
    with contextlib.closing(client):
        return dict(client.cookies.items())


def agent_token(server: ServerProcess, username: str, prepared: dict[str, list[str]]) -> str:
    """A bearer token of an agent account, created on first use."""
    if username not in prepared["agents"]:
        server.ctvms(
            "users", "create", "--role", "agent", "--username", username,
            input=AGENT_PASSWORD + "\n",
        )  # fmt: skip
        prepared["agents"].append(username)
        _remember(server, prepared)
    answer = httpx.post(
        server.url("/api/v1/auth/token"),
        json={"username": username, "password": AGENT_PASSWORD},
        timeout=60,
    )
    if answer.status_code not in (200, 201):
        raise LoadSetupError(f"agent {username}: token answered {answer.status_code}")
    return answer.json()["access_token"]


def _read_db(server: ServerProcess, query: str, *args: Any) -> list[tuple[Any, ...]]:
    path = server.data_dir / "ctvms.sqlite3"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as c:
        return c.execute(query, args).fetchall()


def cast(
    server: ServerProcess,
    *,
    agents: int,
    customers: int,
    admins: int,
    admin_cookies: dict[str, str],
    demo_password: str,
    min_payment_minor: int,
    agent_users: int = 2,
) -> Cast:
    """Prepare the clients. Agents share ``agent_users`` accounts (one token each); the
    customers who log in are the office's first CRFs; admins share the given session."""
    users = [f"loadagent{i + 1}" for i in range(min(agent_users, agents) or 1)]
    prepared = _prepared(server)
    tokens = [agent_token(server, users[i % len(users)], prepared) for i in range(agents)]
    # Every customer with a connection may owe something now or after the monthly billing.
    owing = [
        row[0]
        for row in _read_db(
            server,
            "SELECT c.id FROM customers c WHERE c.archived_at IS NULL AND EXISTS "
            "(SELECT 1 FROM connections n WHERE n.customer = c.id) ORDER BY c.crf DESC",
        )
    ]
    if agents and not owing:
        raise LoadSetupError("the office has no customer with a connection")
    shares = [[str(uuid.UUID(bytes=i) if isinstance(i, bytes) else i) for i in owing[k::agents]]
              for k in range(agents)]  # fmt: skip
    crfs = [
        row[0]
        for row in _read_db(
            server, "SELECT crf FROM customers WHERE archived_at IS NULL ORDER BY crf LIMIT ?",
            customers,
        )
    ]  # fmt: skip
    return Cast(
        agent_tokens=tokens,
        agent_customers=shares,
        customer_cookies=[customer_cookies(server, crf, demo_password, prepared) for crf in crfs],
        admin_cookies=[admin_cookies] * admins,
        min_payment_minor=min_payment_minor,
    )


# -- the clients -----------------------------------------------------------------------------


class _Clock:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def running(self) -> bool:
        return time.monotonic() < self.deadline


async def _timed(
    report: LoadReport,
    kind: str,
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    expect: int = 200,
    **kwargs: Any,
) -> httpx.Response | None:
    """One request, timed under ``kind``; None (and an error noted) on an unexpected answer."""
    start = time.perf_counter()
    try:
        answer = await client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        report.error(f"{kind}: {type(exc).__name__}: {exc}")
        return None
    report.latencies[kind].append((time.perf_counter() - start) * 1000)
    if answer.status_code != expect:
        report.error(f"{kind}: {method} {url} answered {answer.status_code}: {answer.text[:200]}")
        return None
    return answer


async def _think(rng: random.Random, think: float) -> None:
    if think > 0:
        await asyncio.sleep(rng.uniform(0, 2 * think))


async def _record(
    report: LoadReport, client: httpx.AsyncClient, customer_id: str, amount: int
) -> Payment:
    """POST recordPayment; a request lost in transit is sent again with the same key."""
    payment = Payment(key=KEY_PREFIX + uuid.uuid4().hex, customer_id=customer_id, amount=amount)
    report.payments.append(payment)
    body = {
        "customer_id": customer_id,
        "amount": f"{amount // 100}.{amount % 100:02d}",
        "mode": "cash",
        "service": "all",
    }
    for attempt in range(PAYMENT_ATTEMPTS):
        if attempt:
            report.retries += 1
        start = time.perf_counter()
        try:
            answer = await client.post(
                "/api/v1/payments", json=body, headers={"Idempotency-Key": payment.key}
            )
        except httpx.TransportError:
            continue
        report.latencies["agent: record payment (API)"].append((time.perf_counter() - start) * 1000)
        if answer.status_code == 201:
            payment.number = answer.json()["number"]
        elif answer.status_code == 422:
            # The due changed under the agent (another client paid): a refusal, not an error.
            report.rejected += 1
        else:
            report.error(f"record payment answered {answer.status_code}: {answer.text[:200]}")
        return payment
    payment.lost_in_transit = True
    report.error(f"record payment {payment.key}: no answer after {PAYMENT_ATTEMPTS} attempts")
    return payment


async def agent(
    report: LoadReport,
    base_url: str,
    token: str,
    customer_ids: list[str],
    minimum: int,
    clock: _Clock,
    rng: random.Random,
    think: float,
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    pool = list(customer_ids)
    rng.shuffle(pool)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as client:
        for customer_id in itertools.cycle(pool):
            if not clock.running():
                return
            answer = await _timed(
                report,
                "agent: due (API)",
                client,
                "GET",
                "/api/v1/payments",
                params={"customer_id": customer_id},
            )
            due = answer.json()["amount_due"] if answer is not None else 0
            if due > 0:
                await _think(rng, think)
                await _record(report, client, customer_id, due if due <= minimum else minimum)
            await _think(rng, think)


async def customer(
    report: LoadReport,
    base_url: str,
    cookies: dict[str, str],
    clock: _Clock,
    rng: random.Random,
    think: float,
) -> None:
    pages = [
        ("customer: portal", "/portal"),
        ("customer: payments page", "/portal/payments"),
        ("customer: invoices page", "/portal/invoices"),
    ]
    async with httpx.AsyncClient(base_url=base_url, cookies=cookies, timeout=60) as client:
        while clock.running():
            kind, path = rng.choice(pages)
            await _timed(report, kind, client, "GET", path)
            await _think(rng, think)


async def admin(
    report: LoadReport,
    base_url: str,
    cookies: dict[str, str],
    clock: _Clock,
    rng: random.Random,
    think: float,
) -> None:
    async with httpx.AsyncClient(base_url=base_url, cookies=cookies, timeout=60) as client:
        while clock.running():
            if rng.random() < 0.75:
                path = "/customers?q=" + quote_plus(rng.choice(SEARCHES))
                hx = {"HX-Request": "true"}
                await _timed(report, "admin: search", client, "GET", path, headers=hx)
            else:
                await _timed(report, "admin: dashboard", client, "GET", "/")
            await _think(rng, think)


async def run_load(
    base_url: str, who: Cast, *, seconds: float, think: float = 0.05, seed: int = 7
) -> LoadReport:
    """Run every client of ``who`` for ``seconds``; the report before the audit."""
    report = LoadReport(seconds=seconds)
    clock = _Clock(seconds)
    rng = random.Random(seed)
    tasks = [
        agent(
            report,
            base_url,
            token,
            who.agent_customers[i],
            who.min_payment_minor,
            clock,
            random.Random(rng.random()),
            think,
        )
        for i, token in enumerate(who.agent_tokens)
    ]
    tasks += [
        customer(report, base_url, c, clock, random.Random(rng.random()), think)
        for c in who.customer_cookies
    ]
    tasks += [
        admin(report, base_url, c, clock, random.Random(rng.random()), think)
        for c in who.admin_cookies
    ]
    await asyncio.gather(*tasks)
    return report


# -- the audit -------------------------------------------------------------------------------


def invoice_gaps(rows: list[tuple[str]]) -> list[str]:
    """Problems in the invoice numbers ``OFFICE-YEAR-SERIAL``: each office/year series must
    be exactly 1..N (no serial skipped, none repeated)."""
    series: dict[str, list[int]] = defaultdict(list)
    for (number,) in rows:
        prefix, _, serial = number.rpartition("-")
        series[prefix].append(int(serial))
    problems = []
    for prefix, serials in sorted(series.items()):
        serials.sort()
        if serials != list(range(1, len(serials) + 1)):
            repeated = sorted({s for s in serials if serials.count(s) > 1})
            missing = sorted(set(range(1, max(serials) + 1)) - set(serials))
            problems.append(f"{prefix}: missing {missing[:10]}, repeated {repeated[:10]}")
    return problems


def audit_payments(database: Path, payments: list[Payment]) -> dict[str, Any]:
    """Compare what the clients were told with what the database holds."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)) as c:
        stored = c.execute(
            "SELECT number, idempotency_key, customer, amount FROM billing_payments "
            "WHERE idempotency_key LIKE ?",
            (f"%:{KEY_PREFIX}%",),
        ).fetchall()
        numbers = c.execute("SELECT number FROM billing_payments").fetchall()
        integrity = c.execute("PRAGMA integrity_check").fetchone()[0]
    by_key: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in stored:
        by_key[row[1].rpartition(":")[2]].append(row)
    sent = {p.key: p for p in payments}
    lost, duplicated, mismatched, unacknowledged, ambiguous = [], [], [], [], 0
    for p in payments:
        rows = by_key.get(p.key, [])
        if len(rows) > 1:
            duplicated.append(p.key)
        if p.number:
            if not rows:
                lost.append(p.number)
            elif rows[0][0] != p.number or rows[0][3] != p.amount:
                mismatched.append(p.number)
        elif rows:
            if p.lost_in_transit:
                ambiguous += 1  # recorded, answer lost: the client must look it up by key
            else:
                unacknowledged.append(rows[0][0])
    strangers = [k for k in by_key if k not in sent]
    return {
        "acknowledged": sum(1 for p in payments if p.number),
        "stored": len(stored),
        "lost": lost,
        "duplicated": duplicated,
        "mismatched": mismatched,
        "unacknowledged": unacknowledged,
        "ambiguous_after_retries": ambiguous,
        "unknown_keys": strangers,
        "invoice_gaps": invoice_gaps(numbers),
        "integrity": integrity,
    }


def scan_logs(paths: list[Path], since: dict[Path, int] | None = None) -> list[str]:
    """Lines of the logs (from byte offset ``since[path]``) that show a problem."""
    found = []
    for path in paths:
        if not path.exists():
            continue
        with open(path, "rb") as log:
            log.seek((since or {}).get(path, 0))
            for line in log.read().decode(errors="replace").splitlines():
                if LOG_PROBLEMS.search(line):
                    found.append(f"{path.name}: {line.strip()[:300]}")
    return found


def log_offsets(paths: list[Path]) -> dict[Path, int]:
    return {p: p.stat().st_size if p.exists() else 0 for p in paths}


def problems(report: LoadReport) -> list[str]:
    """Everything that makes the run fail (empty when it passed)."""
    a = report.audit
    found = [f"error: {e}" for e in report.errors]
    for name in ("lost", "duplicated", "mismatched", "unacknowledged", "unknown_keys"):
        if a.get(name):
            found.append(f"{name} payments: {a[name][:10]}")
    found += [f"invoice numbers {g}" for g in a.get("invoice_gaps", [])]
    if a.get("integrity") != "ok":
        found.append(f"integrity_check: {a.get('integrity')}")
    found += [f"log: {line}" for line in a.get("log_problems", [])]
    return found


def load_office(
    server: ServerProcess, who: Cast, *, seconds: float, think: float = 0.05
) -> LoadReport:
    """Run the load against ``server`` and audit the database and logs afterwards."""
    logs = [server.log_path, server.worker_log_path]
    offsets = log_offsets(logs)
    report = asyncio.run(run_load(server.base_url, who, seconds=seconds, think=think))
    report.audit = audit_payments(server.data_dir / "ctvms.sqlite3", report.payments)
    report.audit["log_problems"] = scan_logs(logs, offsets)
    return report


# -- the benchmark ---------------------------------------------------------------------------


def _figure_name(kind: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", kind.lower()).strip("_")


async def load_benchmark(ctx: Context) -> Result:
    clients = int(os.environ.get("BENCH_LOAD_CLIENTS", "20"))
    seconds = float(os.environ.get("BENCH_LOAD_SECONDS", "60"))
    agents = max(1, clients * 2 // 5)
    admins = max(1, clients // 5)
    customers = max(0, clients - agents - admins)
    who = cast(
        ctx.server,
        agents=agents,
        customers=customers,
        admins=admins,
        admin_cookies=ctx.admin_cookies,
        demo_password=ctx.demo["customer_password"],
        min_payment_minor=ctx.settings().min_payment_minor,
    )
    report = await run_load(ctx.server.base_url, who, seconds=seconds)
    report.audit = audit_payments(ctx.server.data_dir / "ctvms.sqlite3", report.payments)
    logs = [ctx.server.log_path, ctx.server.worker_log_path]
    report.audit["log_problems"] = scan_logs(logs)
    pay = report.latencies.get("agent: record payment (API)") or [0.0]
    figures: dict[str, float] = {
        "p50_ms": percentile(pay, 50),
        "p95_ms": percentile(pay, 95),
        "rps": report.requests / seconds,
        "clients": clients,
        "requests": report.requests,
        "payments": report.audit["acknowledged"],
        "errors": len(report.errors),
        "locked": sum("database is locked" in line for line in report.audit["log_problems"]),
        "lost": len(report.audit["lost"]),
        "duplicated": len(report.audit["duplicated"]),
    }
    found = problems(report)
    figures["problems"] = len(found)
    for row in report.table():
        figures[f"{_figure_name(row['kind'])}_p95_ms"] = row["p95_ms"]
    note = (
        f"{agents} agents paying (API), {customers} customers reading, {admins} admins searching, "
        f"{seconds:g} s, one run; p50/p95 columns are recordPayment under this load"
    )
    if found:
        note += "; PROBLEMS: " + " | ".join(found[:5])
    return Result(figures=figures, runs=[dict(figures)], note=note)


# Runs after every other benchmark but memory: it adds payments to the office and changes
# customers' passwords, which the other figures should not see. Memory stays last (10,000): it
# only reads the processes' resident sizes, and their peak should include this load.
BENCHMARKS = [
    Benchmark(
        "load",
        "20 clients for 60 s: agents pay, customers read, admins search",
        load_benchmark,
        target="0 errors, 0 locked, 0 lost/duplicated/unacknowledged, gapless invoices",
        check=lambda f: f["problems"] == 0,
        order=9_000,
    )
]
