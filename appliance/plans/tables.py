from piccolo.columns import UUID, Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from appliance.db import new_id

SERVICES = ("cable", "broadband")


class Plan(Table, tablename="plans"):
    """A monthly plan for one service. Retired plans stay on the records that use them."""

    id = UUID(primary_key=True, default=new_id)
    service = Varchar(length=16, help_text="cable or broadband.")
    name = Varchar(length=120)
    monthly_price = Integer(help_text="Monthly price in minor units (cents).")
    description = Text(default="", help_text="Channel pack, or speed and quota.")
    retired_at = Timestamptz(
        null=True, default=None, help_text="Retired plans cannot be chosen for new connections."
    )
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
