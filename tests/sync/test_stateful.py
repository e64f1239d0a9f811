"""Randomized: three boxes (two of one office, one of another) doing random offline work and
random rounds, some cut short by the proxy, against one central. After everyone syncs twice,
every box holds what central holds of its office, every payment is there exactly once and no
invoice number repeats."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from appliance.complaints import service as complaints
from appliance.complaints.tables import CATEGORIES
from appliance.errors import DomainError
from appliance.sync import central as central_service
from appliance.sync import client
from appliance.sync.state import update_state
from tests.billing.conftest import pay, subscriber
from tests.helpers import SYSTEM, make_plan
from tests.sync.conftest import enroll_box, new_code
from tests.sync.helpers import assert_converged, edit_customer, payments, unique_mobile
from tests.sync.proxy import FaultProxy, fresh_client

FIELDS = ("mobile", "area", "house", "district")


@pytest.fixture
def world(shared_central, make_box):
    return shared_central, make_box


def test_random_offline_work_converges(world):
    central, make_box = world

    class Offices(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.boxes: list = []
            self.customers: dict[str, list] = {}
            self.taken: list[str] = []

        def run(self, coro):
            return self.loop.run_until_complete(coro)

        @initialize()
        def offices(self) -> None:
            self.run(self._setup())

        async def _setup(self) -> None:
            self.proxy = await FaultProxy(upstream_port=central.server.port).start()
            first, second = new_code(), new_code()
            a1 = await make_box(central, first)
            b = await make_box(central, second)
            a2 = await make_box(central, first, enroll=False)
            await central.use()
            await enroll_box(a2, central, await central_service.new_enroll_code(first))
            self.boxes = [a1, a2, b]
            for box in (a1, b):
                await box.use()
                plan = await make_plan(service="cable", monthly_price="100.00")
                office = box.settings.office_code
                self.customers[office] = [
                    await subscriber(box.settings, {"cable": plan}, cable="2026-01-01")
                    for _ in range(2)
                ]
            for box in self.boxes:
                await box.use()
                await update_state(central_url=self.proxy.url)
                await self._round(box)

        async def _round(self, box, *, cut: str | None = None) -> None:
            if cut:
                self.proxy.fault(cut, "cut_response")
            try:
                async with fresh_client() as http:
                    await box.sync(http=http, batch=7)
            except client.SyncError:
                assert cut, "a round failed without a fault"
            self.proxy.rules.clear()

        def _customer(self, box, index: int):
            known = self.customers[box.settings.office_code]
            return known[index % len(known)]

        @rule(box=st.integers(0, 2), who=st.integers(0, 1), field=st.sampled_from(FIELDS))
        def edit(self, box, who, field) -> None:
            node = self.boxes[box]

            async def go():
                await node.use()
                await edit_customer(self._customer(node, who)["id"], **{field: unique_mobile()})

            self.run(go())

        @rule(box=st.integers(0, 2), who=st.integers(0, 1))
        def take_payment(self, box, who) -> None:
            node = self.boxes[box]

            async def go():
                await node.use()
                try:
                    payment = await pay(node.settings, self._customer(node, who), "250.00")
                except DomainError:
                    return  # nothing due any more, as the box sees it
                self.taken.append(payment["number"])

            self.run(go())

        @rule(box=st.integers(0, 2), who=st.integers(0, 1))
        def complaint(self, box, who) -> None:
            node = self.boxes[box]

            async def go():
                await node.use()
                await complaints.raise_complaint(
                    self._customer(node, who)["id"],
                    category=CATEGORIES[0],
                    message="No signal since the storm",
                    actor=SYSTEM,
                    settings=node.settings,
                )

            self.run(go())

        @rule(box=st.integers(0, 2))
        def sync(self, box) -> None:
            self.run(self._round(self.boxes[box]))

        @rule(box=st.integers(0, 2), path=st.sampled_from(["/sync/push", "/sync/pull"]))
        def crash_mid_round(self, box, path) -> None:
            self.run(self._round(self.boxes[box], cut=path))

        @invariant()
        def numbers_never_repeat_on_a_box(self) -> None:
            for node in self.boxes:
                numbers = [n for _, n, _ in self.run(payments(node))]
                assert len(numbers) == len(set(numbers))

        def teardown(self) -> None:
            try:
                if self.boxes:
                    self.run(self._finish())
            finally:
                self.run(self.proxy.close())
                self.loop.close()

        async def _finish(self) -> None:
            for _ in range(2):
                for box in self.boxes:
                    await self._round(box)
            await assert_converged(central, *self.boxes)
            everything = await payments(central)
            numbers = [n for _, n, _ in everything]
            assert len(numbers) == len(set(numbers)), "an invoice number repeats"
            assert sorted(self.taken) == sorted(n for n in numbers if n in set(self.taken)), (
                "a payment is missing or doubled at central"
            )
            assert set(self.taken) <= set(numbers)

    Offices.TestCase.settings = settings(
        max_examples=4,
        stateful_step_count=12,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        # Each step is real HTTP and SQLite: shrinking a failure would take minutes.
        phases=[Phase.explicit, Phase.generate],
    )
    Offices.TestCase().runTest()
