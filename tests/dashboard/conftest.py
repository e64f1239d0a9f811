"""An office on 16 November 2026 with one cable and one broadband plan."""

from __future__ import annotations

import pytest

from tests.billing.conftest import set_today
from tests.conftest import run
from tests.helpers import make_plan

TODAY = "2026-11-16"


@pytest.fixture
def plans(settings):
    set_today(settings, TODAY)
    return {
        "cable": run(make_plan(service="cable", name="Cable 100", monthly_price="100.00")),
        "broadband": run(make_plan(service="broadband", name="Fibre 80", monthly_price="80.00")),
    }
