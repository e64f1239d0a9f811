"""Billing ledger: monthly charges, payments with their invoices, allocations, reversals.

Rows here are only ever added, except the running figures that follow from them: a charge's
``state``/``amount`` (fixed when its month is billed), its ``paid`` sum, a customer's ``credit``
and the invoice counters. Payments themselves never change; a reversal is a row of its own.
"""

from piccolo.columns import (
    JSON,
    UUID,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from appliance.accounts.tables import User
from appliance.customers.tables import Connection, Customer
from appliance.db import new_id
from appliance.plans.tables import Plan

CHARGE_STATES = ("scheduled", "billed", "waived")
MODES = ("cash", "online")
TARGETS = ("all", "cable", "broadband")


class BilledConnection(Table, tablename="billing_connections"):
    """Billing's bookkeeping for one connection: what was paid before the box, how far rows go."""

    id = UUID(primary_key=True, default=new_id)
    connection = ForeignKey(Connection, on_delete=OnDelete.restrict, unique=True)
    opening_through = Integer(
        help_text="Last month (YYYYMM) paid before billing began on the box, from the expiry "
        "date given at registration; the month before registration when nothing was."
    )
    rows_through = Integer(
        default=0, help_text="Last year whose monthly rows exist for this connection (0: none)."
    )
    created_at = Timestamptz(default=TimestamptzNow())


class Charge(Table, tablename="billing_charges"):
    """One month of one connection. Created ``scheduled`` by the year updater; the price is
    fixed (``billed``) on the month's first day, or the month is ``waived`` while suspended."""

    id = UUID(primary_key=True, default=new_id)
    customer = ForeignKey(Customer, on_delete=OnDelete.restrict)
    connection = ForeignKey(Connection, on_delete=OnDelete.restrict)
    service = Varchar(length=16, help_text="cable or broadband.")
    year = Integer()
    month = Integer(help_text="1 to 12.")
    state = Varchar(length=12, default="scheduled", help_text="scheduled, billed or waived.")
    plan = ForeignKey(Plan, on_delete=OnDelete.restrict, help_text="Plan the month is billed at.")
    plan_name = Varchar(length=120, help_text="Plan name when billed (snapshot).")
    amount = Integer(default=0, help_text="Price charged, minor units; fixed when billed.")
    paid = Integer(default=0, help_text="Sum settled so far, minor units.")
    opening = Boolean(
        default=False, help_text="Paid before billing began on the box (no payment row)."
    )
    billed_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class Payment(Table, tablename="billing_payments"):
    """Money received, with the invoice it produced. Immutable once recorded."""

    id = UUID(primary_key=True, default=new_id)
    number = Varchar(length=32, unique=True, help_text="Invoice number: OFFICE-YEAR-SERIAL.")
    office_code = Varchar(length=8)
    customer = ForeignKey(Customer, on_delete=OnDelete.restrict)
    amount = Integer(help_text="Money received, minor units.")
    mode = Varchar(length=8, help_text="cash or online.")
    reference = Varchar(
        length=80, default="", help_text="Bank or instant-transfer id (online), upper-case."
    )
    target = Varchar(length=16, default="all", help_text="all, cable or broadband.")
    received_by = ForeignKey(User, on_delete=OnDelete.restrict, null=True, default=None)
    received_by_name = Varchar(length=150, default="", help_text="Staff name, or online.")
    actor_role = Varchar(length=16, default="", help_text="Role of whoever recorded it.")
    idempotency_key = Varchar(
        length=200,
        null=True,
        default=None,
        unique=True,
        help_text="User id and the form's or client's key: a replay returns this payment.",
    )
    paid_on = Date(help_text="Office day of the payment.")
    created_at = Timestamptz(default=TimestamptzNow(), help_text="Issue time of the invoice.")
    credit_after = Integer(default=0, help_text="Unused credit after this payment.")
    due_after = Integer(default=0, help_text="Amount due after this payment.")
    snapshot = JSON(default="{}", help_text="Office and customer as printed on the invoice.")


class Allocation(Table, tablename="billing_allocations"):
    """Part of a payment (or of credit it used) that settled one month."""

    id = UUID(primary_key=True, default=new_id)
    payment = ForeignKey(Payment, on_delete=OnDelete.restrict, index=True)
    charge = ForeignKey(Charge, on_delete=OnDelete.restrict, index=True)
    amount = Integer(help_text="Minor units settled on the charge.")


class PaymentReversal(Table, tablename="billing_reversals"):
    """An admin's correction of a payment: the months it settled are open again."""

    id = UUID(primary_key=True, default=new_id)
    payment = ForeignKey(Payment, on_delete=OnDelete.restrict, unique=True)
    reason = Text()
    reversed_by = ForeignKey(User, on_delete=OnDelete.restrict, null=True, default=None)
    reversed_by_name = Varchar(length=150, default="")
    created_at = Timestamptz(default=TimestamptzNow())


class BillingAccount(Table, tablename="billing_accounts"):
    """A customer's unused credit (money received beyond what settled months)."""

    id = UUID(primary_key=True, default=new_id)
    customer = ForeignKey(Customer, on_delete=OnDelete.restrict, unique=True)
    credit = Integer(default=0, help_text="Minor units.")
    updated_at = Timestamptz(default=TimestamptzNow())


class InvoiceCounter(Table, tablename="invoice_counters"):
    """Last invoice serial per office and year; taken in the payment's transaction, so the
    series has no gaps, and only ever grows, so a number is never reused."""

    id = Varchar(length=24, primary_key=True, help_text="OFFICE-YEAR.")
    office_code = Varchar(length=8)
    year = Integer()
    last = Integer(default=0)
