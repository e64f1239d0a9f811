from piccolo.columns import UUID, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from appliance.accounts.tables import User
from appliance.db import new_id

JOB_STATUSES = ("queued", "running", "done", "failed")


class ReportJob(Table, tablename="report_jobs"):
    """One report asked for by an admin: its filters, how far its generation got, and the file.

    The file lives in ``<data dir>/reports/<id>.<file_type>``: its path is built from the id and
    the file type only, never from anything a user typed.
    """

    id = UUID(primary_key=True, default=new_id)
    requested_by = ForeignKey(
        User, null=True, default=None, on_delete=OnDelete.set_null, help_text="Who asked for it."
    )
    service = Varchar(length=16, help_text="cable, broadband or both.")
    year = Integer()
    month = Integer(help_text="1-12: the month whose charges the report lists.")
    classification = Varchar(length=8, help_text="paid or unpaid.")
    file_type = Varchar(length=8, help_text="pdf or xlsx.")
    office = Varchar(
        length=8, default="", help_text="Central: the office whose customers it lists ('' all)."
    )
    locale = Varchar(length=8, default="pt_BR", help_text="Language the file is written in.")
    status = Varchar(
        length=16, default="queued", index=True, help_text="queued, running, done or failed."
    )
    rows_total = Integer(default=0, help_text="Rows expected (counted when the job began).")
    rows_done = Integer(default=0, help_text="Rows written so far: the progress bar.")
    size = Integer(default=0, help_text="Size of the finished file in bytes.")
    error = Text(default="", help_text="Why the generation failed, for the admin.")
    created_at = Timestamptz(default=TimestamptzNow(), index=True)
    finished_at = Timestamptz(null=True, default=None)
    expires_at = Timestamptz(
        null=True, default=None, help_text="The file is deleted after this; set when done."
    )
