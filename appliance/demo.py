"""``ctvms demo``: a realistic office to try the box on, or to benchmark it.

Rows are written in large batches inside one transaction; a 20,000-customer office takes
seconds. Every demo customer shares one random temporary password (printed), so the demo does
not spend minutes hashing passwords.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from appliance import clock
from appliance.accounts.passwords import hash_password, temporary_password
from appliance.accounts.tables import User
from appliance.customers.service import _search_text
from appliance.customers.tables import Connection, CrfCounter, Customer
from appliance.db import new_id, write_transaction
from appliance.plans.tables import Plan
from appliance.settings import Settings

FIRST = [
    "João",
    "Maria",
    "José",
    "Ana",
    "Antônio",
    "Francisca",
    "Carlos",
    "Adriana",
    "Paulo",
    "Juliana",
    "Pedro",
    "Márcia",
    "Lucas",
    "Fernanda",
    "Luiz",
    "Patrícia",
    "Marcos",
    "Aline",
    "Luís",
    "Sandra",
    "Gabriel",
    "Camila",
    "Rafael",
    "Amanda",
    "Daniel",
    "Bruna",
    "Marcelo",
    "Letícia",
    "Bruno",
    "Júlia",
    "Eduardo",
    "Luciana",
    "Felipe",
    "Vanessa",
    "Raimundo",
    "Mariana",
    "Rodrigo",
    "Gabriela",
    "Manoel",
    "Sônia",
    "Conceição",
    "Iúri",
]
LAST = [
    "Silva",
    "Santos",
    "Oliveira",
    "Souza",
    "Rodrigues",
    "Ferreira",
    "Alves",
    "Pereira",
    "Lima",
    "Gomes",
    "Costa",
    "Ribeiro",
    "Martins",
    "Carvalho",
    "Almeida",
    "Lopes",
    "Soares",
    "Fernandes",
    "Vieira",
    "Barbosa",
    "Rocha",
    "Dias",
    "Nascimento",
    "Andrade",
    "Moreira",
    "Nunes",
    "Marques",
    "Machado",
    "Mendes",
    "Freitas",
    "Cardoso",
    "Ramos",
    "Gonçalves",
    "Santana",
    "Teixeira",
    "Araújo",
    "Conceição",
    "Brandão",
    "Simões",
    "Magalhães",
]
AREAS = [
    "Centro",
    "Vila Nova",
    "Jardim América",
    "São José",
    "Boa Vista",
    "Santa Luzia",
    "Alto da Colina",
    "Parque das Águas",
    "Bela Vista",
    "Vila São João",
    "Cohab",
    "Jardim Primavera",
    "Morada do Sol",
    "Nossa Senhora Aparecida",
]
CABLE_PLANS = [
    ("Básico", 4990, "60 canais, 10 em HD"),
    ("Família", 7990, "110 canais, 40 em HD"),
    ("Premium", 12990, "160 canais, filmes e esportes"),
]
BROADBAND_PLANS = [
    ("Fibra 100", 8990, "100 Mbit/s, sem franquia"),
    ("Fibra 300", 10990, "300 Mbit/s, sem franquia"),
    ("Fibra 600", 14990, "600 Mbit/s, Wi-Fi 6"),
]
BATCH = 500


async def _plans() -> dict[str, list[dict[str, Any]]]:
    existing = await Plan.select().where(Plan.retired_at.is_null())
    if not existing:
        rows = [
            Plan(service="cable", name=n, monthly_price=p, description=d) for n, p, d in CABLE_PLANS
        ]
        rows += [
            Plan(service="broadband", name=n, monthly_price=p, description=d)
            for n, p, d in BROADBAND_PLANS
        ]
        await Plan.insert(*rows)
        existing = await Plan.select().where(Plan.retired_at.is_null())
    return {s: [p for p in existing if p["service"] == s] for s in ("cable", "broadband")}


async def fill(
    settings: Settings, *, customers: int, years: int = 5, seed: int = 42
) -> dict[str, Any]:
    rng = random.Random(seed)
    today = clock.today(settings.tz)
    start = dt.date(today.year - years + 1, 1, 1)
    span = (today - start).days
    password = temporary_password()
    shared_hash = hash_password(password)
    created = 0
    async with write_transaction():
        plans = await _plans()
        rows = await CrfCounter.select().where(CrfCounter.office_code == settings.office_code)
        serial = rows[0]["last"] if rows else 0
        if not rows:
            await CrfCounter(office_code=settings.office_code, last=0).save()
        while created < customers:
            batch_customers, batch_conns, batch_users = [], [], []
            for _ in range(min(BATCH, customers - created)):
                serial += 1
                created += 1
                crf = f"{settings.office_code}{serial:06d}"
                name = f"{rng.choice(FIRST)} {rng.choice(LAST)} {rng.choice(LAST)}"
                mobile = f"55{rng.randint(11, 99)}9{rng.randint(10_000_000, 99_999_999)}"
                cid = new_id()
                email = f"{crf.lower()}@example.com" if rng.random() < 0.7 else ""
                batch_customers.append(
                    Customer(
                        id=cid,
                        crf=crf,
                        name=name,
                        search_text=_search_text(crf, name, mobile),
                        birth_date=dt.date(
                            rng.randint(1940, 2004), rng.randint(1, 12), rng.randint(1, 28)
                        ),
                        house=str(rng.randint(1, 2500)),
                        area=rng.choice(AREAS),
                        district=rng.choice(AREAS),
                        state="SP",
                        country="Brasil",
                        postal_code=f"{rng.randint(10000, 19999)}-{rng.randint(100, 999)}",
                        id_doc_type="CPF",
                        id_doc_number=f"{rng.randint(10**10, 10**11 - 1)}",
                        mobile=mobile,
                        email=email,
                    )
                )
                registered = start + dt.timedelta(days=rng.randint(0, span))
                kind = rng.random()
                services = (
                    ["cable"]
                    if kind < 0.4
                    else ["broadband"]
                    if kind < 0.7
                    else ["cable", "broadband"]
                )
                for service in services:
                    # Most customers are paid up; some are behind, a few far behind.
                    behind = rng.choices([0, 1, 2, 4, 8], weights=[70, 12, 8, 6, 4])[0]
                    month_end = (today.replace(day=1) + dt.timedelta(days=32)).replace(
                        day=1
                    ) - dt.timedelta(days=1)
                    expires = max(registered, month_end - dt.timedelta(days=31 * behind))
                    lapsed = (today - expires).days
                    status = (
                        "active" if lapsed <= 0 else "inactive" if lapsed <= 60 else "suspended"
                    )
                    batch_conns.append(
                        Connection(
                            customer=cid,
                            service=service,
                            plan=rng.choice(plans[service])["id"],
                            device_id=f"{service[:2].upper()}{rng.randint(10**9, 10**10 - 1)}",
                            registered_on=registered,
                            expires_on=expires,
                            status=status,
                        )
                    )
                batch_users.append(
                    User(
                        role="customer",
                        customer=cid,
                        password_hash=shared_hash,
                        must_change_password=True,
                    )
                )
            await Customer.insert(*batch_customers)
            await Connection.insert(*batch_conns)
            await User.insert(*batch_users)
        await CrfCounter.update({CrfCounter.last: serial}).where(
            CrfCounter.office_code == settings.office_code
        )
    return {
        "customers": created,
        "last_crf": f"{settings.office_code}{serial:06d}",
        "customer_password": password,
    }
