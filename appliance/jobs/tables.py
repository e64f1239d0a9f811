from piccolo.columns import JSON, UUID, Boolean, Integer, Text, Timestamptz, Varchar
from piccolo.table import Table

from appliance.db import new_id

RUN_STATUSES = ("running", "ok", "error", "interrupted")


class JobLock(Table, tablename="job_locks"):
    """One row per job: who runs it now, until when the claim holds, and whether another run was
    asked for meanwhile. A claim lapses at ``expires_at`` even if its holder died."""

    job = Varchar(length=40, primary_key=True)
    owner = Varchar(
        length=200,
        null=True,
        default=None,
        help_text="host|pid|token of the process running the job; empty when free.",
    )
    acquired_at = Timestamptz(null=True, default=None)
    expires_at = Timestamptz(
        null=True, default=None, help_text="The claim lapses then, even if never released."
    )
    run_id = UUID(null=True, default=None, help_text="The job_runs row of the current holder.")
    rerun = Boolean(default=False, help_text="Another run was refused while this one held it.")
    last_released_at = Timestamptz(
        null=True, default=None, help_text="When a run last finished (idle runs included)."
    )


class JobRun(Table, tablename="job_runs"):
    """One run of a scheduled job: when, how long, what it did or why it failed."""

    id = UUID(primary_key=True, default=new_id)
    job = Varchar(length=40, index=True)
    trigger = Varchar(
        length=16, help_text="schedule, startup, catch-up, manual (System page) or cli."
    )
    owner = Varchar(length=200, default="", help_text="host|pid|token of the process.")
    period = Varchar(
        length=16, default="", index=True, help_text="Day, month or year the run covered."
    )
    started_at = Timestamptz()
    finished_at = Timestamptz(null=True, default=None)
    duration_ms = Integer(null=True, default=None)
    status = Varchar(length=16, default="running", help_text="running, ok, error, interrupted.")
    result = JSON(default="{}", help_text="The job's summary (counts).")
    error = Text(default="")
