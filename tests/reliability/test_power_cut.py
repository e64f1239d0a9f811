"""Power cut: the server and the worker are killed with SIGKILL at random moments while agents
record payments, then started again, over and over.

After every cut, before the box comes back, the database file must pass ``PRAGMA
integrity_check``; every payment a client was told about must be stored exactly once; and each
office/year series of invoice numbers must run 1..N with nothing skipped or repeated. A client
whose request was cut off sends it again after the restart with the same ``Idempotency-Key``,
as a real client must: it gets the payment recorded before the cut, or it is recorded now, and
never twice. At the end every payment ever sent must be acknowledged.

``make test`` makes 5 cuts; ``CTVMS_EXTENDED=1`` makes 100 (``CTVMS_POWER_CUTS=N`` any number).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from dataclasses import dataclass, field

import httpx

from bench import load
from bench.server import ServerProcess
from tests.reliability.office import ADMIN_PASSWORD, ADMIN_USERNAME, api_token, prepare

EXTENDED = os.environ.get("CTVMS_EXTENDED", "") not in ("", "0")
CUTS = int(os.environ.get("CTVMS_POWER_CUTS") or (100 if EXTENDED else 5))
CLIENTS = 4
SEED = int(os.environ.get("CTVMS_POWER_CUT_SEED") or time.time())


@dataclass
class Ledger:
    """What the clients sent and were told, across every cut."""

    payments: list[load.Payment] = field(default_factory=list)
    pending: dict[int, list[load.Payment]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    cut_off: int = 0
    replayed: int = 0
    committed_unanswered: int = 0


async def _pay(client: httpx.AsyncClient, payment: load.Payment, ledger: Ledger) -> bool:
    """Send one payment; False when the request was cut off (the payment stays pending)."""
    body = {
        "customer_id": payment.customer_id,
        "amount": f"{payment.amount // 100}.{payment.amount % 100:02d}",
        "mode": "cash",
        "service": "all",
    }
    try:
        answer = await client.post(
            "/api/v1/payments", json=body, headers={"Idempotency-Key": payment.key}
        )
    except httpx.TransportError:
        payment.lost_in_transit = True
        return False
    if answer.status_code == 201:
        number = answer.json()["number"]
        if payment.number and payment.number != number:
            ledger.errors.append(f"{payment.key} answered {number}, before {payment.number}")
        if payment.lost_in_transit:
            ledger.replayed += 1
        payment.number = number
        payment.lost_in_transit = False
    else:
        ledger.errors.append(f"{payment.key}: {answer.status_code} {answer.text[:200]}")
    return True


async def _agent(
    index: int,
    base_url: str,
    token: str,
    customers: list[str],
    ledger: Ledger,
    stop: asyncio.Event,
    rng: random.Random,
) -> None:
    """Retry what the last cut left pending, then take 1.00 from customers in turn until the
    server dies or ``stop`` is set."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
        pending = ledger.pending.pop(index, [])
        while pending and not stop.is_set():
            if not await _pay(client, pending[0], ledger):
                ledger.pending[index] = pending
                return
            pending.pop(0)
        while not stop.is_set():
            customer_id = rng.choice(customers)
            try:
                due = await client.get("/api/v1/payments", params={"customer_id": customer_id})
            except httpx.TransportError:
                return
            if due.status_code != 200:
                ledger.errors.append(f"due of {customer_id}: {due.status_code} {due.text[:200]}")
                return
            if due.json()["amount_due"] < 100:
                continue
            payment = load.Payment(
                key=load.KEY_PREFIX + uuid.uuid4().hex, customer_id=customer_id, amount=100
            )
            ledger.payments.append(payment)
            if not await _pay(client, payment, ledger):
                ledger.cut_off += 1
                ledger.pending[index] = [payment]
                return


async def _run_until_cut(
    server: ServerProcess,
    tokens: list[str],
    shares: list[list[str]],
    ledger: Ledger,
    rng: random.Random,
) -> None:
    stop = asyncio.Event()
    agents = [
        asyncio.create_task(
            _agent(
                i, server.base_url, tokens[i], shares[i], ledger, stop, random.Random(rng.random())
            )
        )
        for i in range(CLIENTS)
    ]
    await asyncio.sleep(rng.uniform(0.05, 1.5))
    # The power goes: nothing is flushed, no handler runs.
    for process in (server.process, server.worker):
        if process is not None and process.poll() is None:
            process.kill()
    for process in (server.process, server.worker):
        if process is not None:
            process.wait(timeout=10)
    stop.set()
    await asyncio.gather(*agents)


async def _settle(server: ServerProcess, tokens: list[str], ledger: Ledger) -> None:
    """After the last restart: send again what the last cut left pending."""
    for index, payments in sorted(ledger.pending.items()):
        headers = {"Authorization": f"Bearer {tokens[index]}"}
        async with httpx.AsyncClient(
            base_url=server.base_url, headers=headers, timeout=30
        ) as client:
            for payment in payments:
                assert await _pay(client, payment, ledger), f"{payment.key} cut off again"
    ledger.pending.clear()


def _audit(server: ServerProcess, ledger: Ledger, when: str) -> None:
    audit = load.audit_payments(server.data_dir / "ctvms.sqlite3", ledger.payments)
    assert audit["integrity"] == "ok", f"{when}: integrity_check says {audit['integrity']}"
    for name in ("lost", "duplicated", "mismatched", "unacknowledged", "unknown_keys"):
        assert audit[name] == [], f"{when}: {name} payments {audit[name][:10]}"
    assert audit["invoice_gaps"] == [], f"{when}: invoice numbers {audit['invoice_gaps']}"
    assert ledger.errors == [], f"{when}: {ledger.errors[:5]}"
    # Cut off after the commit but before the answer: the replayed key must return it.
    ledger.committed_unanswered += audit["ambiguous_after_retries"]


def _shares(server: ServerProcess) -> list[list[str]]:
    ids = [
        str(row[0])
        for row in load._read_db(
            server,
            "SELECT c.id FROM customers c WHERE EXISTS "
            "(SELECT 1 FROM connections n WHERE n.customer = c.id) ORDER BY c.crf",
        )
    ]
    return [ids[i::CLIENTS] for i in range(CLIENTS)]


def test_power_cuts_keep_every_acknowledged_payment_once_and_numbers_gapless(tmp_path):
    rng = random.Random(SEED)
    server, _ = prepare(tmp_path / "office", customers=80, env={"CTVMS_MIN_PAYMENT": "1"})
    ledger = Ledger()
    with server:
        server.start()
        server.start_worker()
        server.wait_idle(quiet_for=1.0, within=120)
        tokens = [
            api_token(server.base_url, ADMIN_USERNAME, ADMIN_PASSWORD) for _ in range(CLIENTS)
        ]
        shares = _shares(server)
        for n in range(1, CUTS + 1):
            asyncio.run(_run_until_cut(server, tokens, shares, ledger, rng))
            _audit(server, ledger, f"after cut {n} of {CUTS} (seed {SEED})")
            server.start()
            server.start_worker()
        asyncio.run(_settle(server, tokens, ledger))
        _audit(server, ledger, f"after the last restart (seed {SEED})")
        left = [p.key for p in ledger.payments if not p.number]
        assert left == [], f"payments never acknowledged: {left[:10]}"
        acknowledged = sum(1 for p in ledger.payments if p.number)
        assert acknowledged >= CUTS, f"only {acknowledged} payments in {CUTS} cuts"
        logs = load.scan_logs([server.log_path, server.worker_log_path])
        assert logs == [], logs[:5]
    print(
        f"{CUTS} power cuts (seed {SEED}): {acknowledged} payments acknowledged, "
        f"{ledger.cut_off} cut off in flight ({ledger.committed_unanswered} of them committed "
        f"before the cut), {ledger.replayed} settled by a replayed key"
    )
