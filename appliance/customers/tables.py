from piccolo.columns import (
    UUID,
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

from appliance.db import new_id
from appliance.plans.tables import Plan

STATUSES = ("active", "inactive", "suspended")


class Customer(Table, tablename="customers"):
    """A subscriber of the office. Never deleted: removal archives."""

    id = UUID(primary_key=True, default=new_id)
    crf = Varchar(length=32, unique=True, help_text="Customer number: office code + serial.")
    name = Varchar(length=200)
    search_text = Text(
        default="",
        index=True,
        help_text="CRF, name and mobile folded to lower-case ASCII for search.",
    )
    birth_date = Date(null=True, default=None)
    house = Varchar(length=120, default="", help_text="House name or number.")
    area = Varchar(length=120, default="")
    district = Varchar(length=120, default="")
    state = Varchar(length=120, default="")
    country = Varchar(length=120, default="")
    postal_code = Varchar(length=20, default="")
    id_doc_type = Varchar(length=40, default="", help_text="ID document type (CPF, RG, ...).")
    id_doc_number = Varchar(length=60, default="")
    mobile = Varchar(length=20, default="", index=True, help_text="Digits only.")
    email = Varchar(length=254, default="", index=True, help_text="Lower-case.")
    archived_at = Timestamptz(
        null=True, default=None, help_text="Set when removed: out of lists and counts, login off."
    )
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class Connection(Table, tablename="connections"):
    """A customer's cable TV or broadband connection (at most one of each)."""

    id = UUID(primary_key=True, default=new_id)
    customer = ForeignKey(Customer, on_delete=OnDelete.restrict, index=True)
    service = Varchar(length=16, help_text="cable or broadband.")
    plan = ForeignKey(Plan, on_delete=OnDelete.restrict)
    device_id = Varchar(length=80, default="", help_text="Set-top box chip id, ONU or router id.")
    registered_on = Date()
    expires_on = Date(null=True, default=None, help_text="Last day of paid service.")
    status = Varchar(
        length=16, default="active", index=True, help_text="active, inactive or suspended."
    )
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class CrfCounter(Table, tablename="crf_counters"):
    """Last CRF serial handed out per office; only ever grows, so numbers are never reused."""

    office_code = Varchar(length=8, primary_key=True)
    last = Integer(default=0)
