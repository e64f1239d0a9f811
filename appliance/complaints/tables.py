from piccolo.columns import UUID, Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from appliance.customers.tables import Customer
from appliance.db import new_id

CATEGORIES = ("no_signal", "set_top_box", "billing", "broadband_down", "slow_speed", "other")
STATUSES = ("open", "resolved")
EVENT_KINDS = ("raised", "note", "resolved")


class Complaint(Table, tablename="complaints"):
    """A customer's complaint, from raised to resolved. Never deleted."""

    id = UUID(primary_key=True, default=new_id)
    number = Varchar(
        length=32, unique=True, help_text="Human number: office code, C, serial (TS-C-000123)."
    )
    customer = ForeignKey(Customer, on_delete=OnDelete.restrict, index=True)
    category = Varchar(length=24, help_text=", ".join(CATEGORIES) + ".")
    message = Text(help_text="What the customer wrote.")
    status = Varchar(length=16, default="open", index=True, help_text="open or resolved.")
    raised_at = Timestamptz(default=TimestamptzNow(), index=True)
    raised_by = UUID(
        null=True, default=None, help_text="User who recorded it (the customer or staff)."
    )
    read_at = Timestamptz(
        null=True, default=None, help_text="When the office marked it read; unread while empty."
    )
    resolved_at = Timestamptz(null=True, default=None)
    resolution = Text(default="", help_text="The resolution note sent to the customer.")
    updated_at = Timestamptz(default=TimestamptzNow())


class ComplaintEvent(Table, tablename="complaint_events"):
    """One step in a complaint's history. Rows are only ever added."""

    id = UUID(primary_key=True, default=new_id)
    complaint = ForeignKey(Complaint, on_delete=OnDelete.restrict, index=True)
    at = Timestamptz(default=TimestamptzNow())
    kind = Varchar(length=16, help_text="raised, note or resolved.")
    actor_id = UUID(null=True, default=None, help_text="User who acted.")
    actor = Varchar(length=200, default="", help_text="Their name at the time.")
    text = Text(default="", help_text="The note or resolution; empty for raised.")
    visible_to_customer = Boolean(default=True, help_text="False for the office's internal notes.")


class ComplaintCounter(Table, tablename="complaint_counters"):
    """Last complaint serial per office; only ever grows, so numbers are never reused."""

    office_code = Varchar(length=8, primary_key=True)
    last = Integer(default=0)
