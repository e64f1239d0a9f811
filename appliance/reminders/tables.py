from piccolo.columns import JSON, UUID, Boolean, ForeignKey, Integer, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from appliance.customers.tables import Customer
from appliance.db import new_id

BATCH_STATUSES = ("queued", "running", "done")
REMINDER_STATUSES = ("pending", "sent", "recent", "paid", "no_email")


class ReminderBatch(Table, tablename="reminder_batches"):
    """One "send reminders" action of an admin, processed in the background."""

    id = UUID(primary_key=True, default=new_id)
    created_at = Timestamptz(default=TimestamptzNow())
    created_by = Varchar(length=200, default="", help_text="Display name of the admin.")
    created_by_id = UUID(null=True, default=None)
    service = Varchar(length=16, default="", help_text="cable, broadband or empty for both.")
    min_due = Integer(default=0, help_text="Minimum amount due, minor units.")
    min_months = Integer(default=0, help_text="Minimum number of pending months.")
    force = Boolean(default=False, help_text="Send even to customers reminded recently.")
    total = Integer(default=0)
    done = Integer(default=0, help_text="Reminders processed so far (progress).")
    sent = Integer(default=0)
    skipped = Integer(default=0, help_text="Reminded recently, paid meanwhile or no e-mail.")
    status = Varchar(length=16, default="queued", index=True, help_text="queued, running, done.")
    finished_at = Timestamptz(null=True, default=None)


class Reminder(Table, tablename="reminders"):
    """One customer in a batch, and what happened: sent (queued in the outbox) or why not."""

    id = UUID(primary_key=True, default=new_id)
    batch = ForeignKey(ReminderBatch, on_delete=OnDelete.restrict, index=True)
    customer = ForeignKey(Customer, on_delete=OnDelete.restrict, index=True)
    status = Varchar(
        length=16, default="pending", help_text="pending, sent, recent, paid or no_email."
    )
    email = Varchar(length=254, default="")
    amount_due = Integer(default=0, help_text="Amount in the e-mail, minor units.")
    months = JSON(default="[]", help_text="Pending months in the e-mail: [{service, year, month}].")
    outbox_id = UUID(null=True, default=None)
    sent_at = Timestamptz(null=True, default=None, index=True)
