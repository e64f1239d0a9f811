from piccolo.columns import JSON, UUID, Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from appliance.db import new_id

MAIL_STATUSES = ("queued", "sent", "failed")


class OutboxMessage(Table, tablename="outbox"):
    """An e-mail waiting for, or done with, delivery (transactional outbox)."""

    id = UUID(primary_key=True, default=new_id)
    message_id = Varchar(length=200, unique=True, help_text="Stable Message-ID header.")
    kind = Varchar(length=32, help_text="credentials, otp, invoice, reminder, ...")
    to_addr = Varchar(length=254)
    subject = Varchar(length=300)
    body_text = Text()
    body_html = Text(default="")
    attachments = JSON(default="[]", help_text="Files to attach: [{path, filename, type}].")
    status = Varchar(length=16, default="queued", index=True)
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz(default=TimestamptzNow(), index=True)
    last_error = Text(default="")
    created_at = Timestamptz(default=TimestamptzNow())
    sent_at = Timestamptz(null=True, default=None)
