"""Invoice views shaped exactly like ``appliance.billing.service.invoice_view`` returns them,
for rendering tests that need no payment in the database."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any


def make_view(**overrides: Any) -> dict[str, Any]:
    view: dict[str, Any] = {
        "number": "TS-2026-000042",
        "issued_at": dt.datetime(2026, 3, 5, 17, 30, tzinfo=dt.UTC),
        "customer_id": uuid.UUID("01900000-0000-7000-8000-000000000001"),
        "office": {"code": "TS", "name": "Test Office", "address": "Rua das Flores, 12\nCentro"},
        "customer": {
            "crf": "TS000042",
            "name": "João da Silva",
            "house": "12",
            "area": "Centro",
            "district": "Sé",
            "state": "SP",
            "postal_code": "01000-000",
            "mobile": "11912345678",
            "email": "joao@example.com",
        },
        "lines": [
            {"service": "cable", "plan_name": "Básico", "year": 2026, "month": 1, "amount": 4990},
            {"service": "cable", "plan_name": "Básico", "year": 2026, "month": 3, "amount": 4990},
            {
                "service": "broadband",
                "plan_name": "Fibra 100",
                "year": 2025,
                "month": 12,
                "amount": 8990,
            },
        ],
        "amount_paid": 20010,
        "mode": "online",
        "reference": "E1234567890",
        "received_by": "Maria Agent",
        "credit": 1040,
        "remaining_due": 4990,
        "currency": "BRL",
        "reversed": False,
        "reversal_reason": "",
    }
    view.update(overrides)
    return view
