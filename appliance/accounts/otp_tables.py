from piccolo.columns import UUID, ForeignKey, Integer, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from appliance.accounts.tables import User
from appliance.db import new_id


class OneTimeCode(Table, tablename="one_time_codes"):
    """A password-change code sent by e-mail. Only a keyed hash of the code is stored."""

    id = UUID(primary_key=True, default=new_id)
    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    code_hash = Varchar(length=64, help_text="HMAC-SHA256 of id and code, keyed by the secret.")
    sent_at = Timestamptz(default=TimestamptzNow(), index=True)
    expires_at = Timestamptz(help_text="Refused from then on (10 minutes after sending).")
    attempts = Integer(default=0, help_text="Wrong codes entered; refused after the limit.")
    used_at = Timestamptz(
        null=True, default=None, help_text="Set when redeemed or replaced by a newer code."
    )
    address = Varchar(length=64, default="", help_text="Client address that asked for it.")


class OtpEvent(Table, tablename="otp_events"):
    """Code requests and wrong codes by client address, for the per-address rate limits.

    Recorded whether or not the login exists, so the limits reveal nothing about accounts.
    """

    id = UUID(primary_key=True, default=new_id)
    address = Varchar(length=64, index=True)
    kind = Varchar(length=16, help_text="request or failure.")
    at = Timestamptz(default=TimestamptzNow(), index=True)
