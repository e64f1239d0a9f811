from piccolo.columns import JSON, UUID, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from appliance.db import new_id


class AuditEntry(Table, tablename="audit_log"):
    """Who changed what, and when. Rows are only ever added."""

    id = UUID(primary_key=True, default=new_id)
    at = Timestamptz(default=TimestamptzNow(), index=True)
    actor_id = UUID(null=True, default=None, help_text="User who made the change.")
    actor = Varchar(length=200, default="", help_text="Their name at the time.")
    entity = Varchar(length=32, help_text="customer, connection, plan or user.")
    entity_id = UUID(index=True)
    action = Varchar(length=32, help_text="create, update, archive, restore, ...")
    changes = JSON(default="{}", help_text="Field -> [old, new].")
