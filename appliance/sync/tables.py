"""Sync tables: the change log and sync state (every node), and central's register of offices,
boxes, conflicts, dead letters and overpayment flags.

The change log doubles as central's feed: on central every change it knows (its own edits and
those applied from boxes) has a ``feed_seq``, handed out under the ``sync_state`` row lock, so
feed numbers commit in order and a reader polling ``feed_seq > cursor`` never skips one.
"""

from piccolo.columns import UUID, BigInt, Boolean, Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from appliance.db import new_id

LOCAL = "local"


class SyncState(Table, tablename="sync_state"):
    """One row (key ``local``): this node's identity, clocks, cursor and health."""

    key = Varchar(length=16, primary_key=True, help_text="Always 'local'.")
    node_id = UUID(help_text="This node's identity; every change it makes carries it.")
    office_code = Varchar(length=8, default="", help_text="Office of this box ('' on central).")
    last_seq = BigInt(default=0, help_text="Last per-node sequence number handed out.")
    hlc = BigInt(default=0, help_text="Hybrid logical clock: wall ms << 16 | counter.")
    feed_seq = BigInt(default=0, help_text="Central: last feed number handed out.")
    applying = Integer(
        default=0, help_text="1 while a sync apply runs (SQLite triggers then log nothing)."
    )
    schema_version = Integer(default=1, help_text="Sync schema version stamped on changes.")
    cursor = BigInt(default=0, help_text="Box: last central feed number applied.")
    central_url = Varchar(length=300, default="")
    box_secret = Varchar(length=100, default="", help_text="Box: credential for central.")
    enrolled_at = Timestamptz(null=True, default=None)
    last_success = Timestamptz(null=True, default=None)
    last_attempt = Timestamptz(null=True, default=None)
    last_error = Text(default="")
    failures = Integer(default=0, help_text="Failed rounds in a row (back-off).")
    clock_offset_ms = BigInt(default=0, help_text="Central's clock minus this box's, in ms.")
    needs_update = Boolean(default=False, help_text="Central sent data of a newer schema.")
    numbering_blocked = Boolean(
        default=False,
        help_text="Identity conflict (restored backup or cloned card): no invoice numbers "
        "until the box has caught up with central.",
    )
    blocked_reason = Text(default="")
    invoice_series = Varchar(
        length=16,
        default="",
        help_text="Box: prefix of its invoice numbers, from central at enrollment: the office "
        "code for its first box, OFFICE-N for the N-th, so boxes of one office never share a "
        "number ('' until enrolled: the office code).",
    )


class SyncChange(Table, tablename="sync_changes"):
    """One change of a synced row: written by triggers in the change's own transaction."""

    id = UUID(primary_key=True, default=new_id, help_text="Change id (UUIDv7).")
    seq = BigInt(help_text="Sequence number of the change on its node.")
    hlc = BigInt(help_text="HLC stamp of the change.")
    node_id = UUID(help_text="Node where the change was made.")
    office_code = Varchar(length=8, default="", help_text="Office of that node.")
    table_name = Varchar(length=40)
    row_id = UUID()
    customer_id = UUID(null=True, default=None, help_text="Customer the row belongs to.")
    op = Varchar(length=8, help_text="insert or update.")
    data = Text(help_text="JSON: the whole row (insert) or the changed fields (update).")
    old = Text(default="{}", help_text="JSON: the changed fields' previous values.")
    schema_version = Integer(default=1)
    sent = Boolean(default=False, help_text="Box: central has it.")
    origin = Varchar(length=8, default="local", help_text="local, or remote (applied here).")
    feed_seq = BigInt(null=True, default=None, help_text="Central: position in the feed.")
    received_at = Timestamptz(default=TimestamptzNow())


class SyncOffice(Table, tablename="sync_offices"):
    """Central: an office, with its pending one-time enrollment code."""

    code = Varchar(length=8, primary_key=True)
    name = Varchar(length=200)
    enroll_code_hash = Varchar(length=100, default="", help_text="SHA-256 of the code.")
    enroll_expires_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class SyncBox(Table, tablename="sync_boxes"):
    """Central: an enrolled box and what central knows about it."""

    node_id = UUID(primary_key=True)
    office_code = Varchar(length=8, index=True)
    secret_hash = Varchar(length=100, help_text="SHA-256 of the box's secret.")
    enrolled_at = Timestamptz(default=TimestamptzNow())
    revoked_at = Timestamptz(null=True, default=None)
    last_seq = BigInt(default=0, help_text="Last sequence number applied from the box.")
    cursor = BigInt(default=0, help_text="Last feed number the box pulled.")
    last_seen = Timestamptz(null=True, default=None)
    clock_offset_ms = BigInt(default=0, help_text="Central's clock minus the box's.")
    future_stamps = Integer(default=0, help_text="Changes stamped too far in the future.")
    identity_conflicts = Integer(
        default=0, help_text="Pushes that reused sequence numbers (old backup or cloned card)."
    )
    schema_version = Integer(default=1)


class SyncConflict(Table, tablename="sync_conflicts"):
    """A field two nodes edited concurrently: the winner applied, the loser kept here."""

    id = UUID(primary_key=True, default=new_id)
    table_name = Varchar(length=40)
    row_id = UUID(index=True)
    field = Varchar(length=60)
    winner_value = Text(help_text="JSON value.")
    winner_hlc = BigInt()
    winner_node = UUID()
    loser_value = Text(help_text="JSON value.")
    loser_hlc = BigInt()
    loser_node = UUID()
    detected_at = Timestamptz(default=TimestamptzNow())
    reviewed_at = Timestamptz(null=True, default=None)
    reversed_at = Timestamptz(
        null=True, default=None, help_text="The owner chose the loser: it was applied anew."
    )


class SyncDeadLetter(Table, tablename="sync_dead_letters"):
    """A change that could not be applied, with the reason. It never blocks the others."""

    id = UUID(primary_key=True, default=new_id)
    change_id = UUID(index=True)
    node_id = UUID()
    office_code = Varchar(length=8, default="")
    table_name = Varchar(length=40)
    row_id = UUID(null=True, default=None)
    change = Text(help_text="The change as received (JSON).")
    reason = Text()
    created_at = Timestamptz(default=TimestamptzNow())
    resolved_at = Timestamptz(null=True, default=None)


class SyncOverpayment(Table, tablename="sync_overpayments"):
    """Central: money beyond what a customer's months needed, found when offices' payments met.
    The excess stays as credit; the owner reviews the flag."""

    id = UUID(primary_key=True, default=new_id)
    customer = UUID(index=True)
    excess = Integer(help_text="Minor units received beyond the settled months.")
    detail = Text(default="", help_text="JSON: the months paid twice and by which payments.")
    detected_at = Timestamptz(default=TimestamptzNow())
    reviewed_at = Timestamptz(null=True, default=None)


class SyncMailStatus(Table, tablename="sync_mail_status"):
    """Central: delivery status of the boxes' e-mails (never sent again by central)."""

    id = UUID(primary_key=True, help_text="The box's outbox message id.")
    office_code = Varchar(length=8, default="")
    kind = Varchar(length=32, default="")
    to_addr = Varchar(length=254, default="")
    status = Varchar(length=16, default="")
    attempts = Integer(default=0)
    last_error = Text(default="")
    created_at = Timestamptz(null=True, default=None)
    sent_at = Timestamptz(null=True, default=None)


SYNC_TABLES = [
    SyncState,
    SyncChange,
    SyncOffice,
    SyncBox,
    SyncConflict,
    SyncDeadLetter,
    SyncOverpayment,
    SyncMailStatus,
]
