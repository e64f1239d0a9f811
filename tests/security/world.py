"""One office with something behind every kind of id a route can take: two customers who each
paid and complained, staff of every role, a report, a reminder batch and an outbox message.

The security tests fill every path parameter from here, so a customer's request can name the
other customer's real invoice, complaint or record instead of a made-up id.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from appliance import clock
from appliance.web.auth import policy_for
from tests.helpers import (
    SYSTEM,
    customer_password,
    make_customer,
    make_plan,
    make_staff,
)

CUSTOMER_PASSWORD = "customer-pass-77"
STAFF_PASSWORD = "correct-horse-42"


@dataclasses.dataclass
class Person:
    """Someone acting in a service call made while seeding (as the web identity would)."""

    role: str
    display_name: str
    id: Any = None
    customer_id: Any = None


@dataclasses.dataclass
class Account:
    """A customer with everything that belongs to them."""

    key: str
    customer: dict[str, Any]
    user_id: Any
    login: str
    invoice: str
    complaint: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.customer["id"])

    def marks(self) -> list[str]:
        """Text that would only appear in a response that leaked this customer's data."""
        c = self.customer
        return [c["name"], c["crf"], c["mobile"], self.invoice, self.complaint["number"]]


@dataclasses.dataclass
class World:
    settings: Any
    plan: dict[str, Any]
    a: Account
    b: Account
    staff: dict[str, Any]  # role -> user row
    report_id: str
    batch_id: str
    message_id: str

    def account(self, key: str) -> Account:
        return self.a if key == "a" else self.b

    def other(self, key: str) -> Account:
        return self.b if key == "a" else self.a


async def _account(settings, key: str, plan: dict[str, Any], name: str, agent: Any) -> Account:
    from appliance.accounts.tables import User
    from appliance.billing import service as billing
    from appliance.complaints import service as complaints

    start = clock.today(settings.tz).replace(day=1).isoformat()
    customer = await make_customer(
        settings,
        name=name,
        email=f"{key}-customer@example.com",
        cable_plan=str(plan["id"]),
        cable_registered_on=start,
    )
    await customer_password(customer["id"], CUSTOMER_PASSWORD)
    user = (await User.select(User.id).where(User.customer == customer["id"]))[0]
    payment = await billing.record_payment(
        customer["id"],
        {"amount": "100", "mode": "cash", "reference": "", "service": "all"},
        actor=agent,
        settings=settings,
    )
    me = Person("customer", name, id=user["id"], customer_id=customer["id"])
    complaint = await complaints.raise_complaint(
        customer["id"],
        category=complaints.category_choices()[0][0],
        message=f"Signal lost at {name}'s house",
        actor=me,
        settings=settings,
    )
    return Account(
        key=key,
        customer=customer,
        user_id=user["id"],
        login=customer["crf"],
        invoice=payment["number"],
        complaint=complaint,
    )


async def build_world(settings) -> World:
    from appliance.mail.tables import OutboxMessage
    from appliance.reminders import service as reminders
    from appliance.reports import service as reports

    plan = await make_plan(service="cable", name="Cable 100", monthly_price="100.00")
    staff = {role: await make_staff(role, f"the-{role}") for role in ("agent", "admin", "owner")}
    agent = Person("agent", "The Agent", id=staff["agent"]["id"])
    a = await _account(settings, "a", plan, "Alice Arantes", agent)
    b = await _account(settings, "b", plan, "Bruna Bezerra", agent)
    today = clock.today(settings.tz)
    report = await reports.create_report(
        {
            "service": "cable",
            "classification": "paid",
            "file_type": "xlsx",
            "year": str(today.year),
            "month": str(today.month),
        },
        actor=SYSTEM,
        settings=settings,
    )
    criteria, _errors = reminders.parse_criteria({})
    batch = await reminders.start_batch(settings, criteria, [a.customer["id"]], actor=SYSTEM)
    message = (await OutboxMessage.select(OutboxMessage.id).limit(1))[0]
    return World(
        settings=settings,
        plan=plan,
        a=a,
        b=b,
        staff=staff,
        report_id=str(report["id"]),
        batch_id=str(batch["id"]),
        message_id=str(message["id"]),
    )


async def session_token(settings, user_id: Any, *, kind: str = "web") -> str:
    """A session for ``user_id`` without the password round trip (argon2 is slow on purpose)."""
    from appliance.accounts import service as accounts

    return await accounts.start_session(user_id, policy=policy_for(settings), kind=kind)


def user_id_of(world: World, who: str) -> Any:
    if who in ("a", "b"):
        return world.account(who).user_id
    return world.staff[who]["id"]
