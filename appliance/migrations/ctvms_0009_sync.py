"""Sync: change log, sync state, central's register, and the change-capture triggers.

Written by hand: the tables are plain DDL and the triggers are generated below from frozen
column lists (a later migration that adds a column to a synced table must recreate that table's
triggers with the new list).

Capture design (docs/architecture.md, "Sync"): each synced table has triggers that append to
``sync_changes`` inside the statement that changed the row, so a change and its log entry commit
or roll back together and no code path can forget to log. The trigger also takes the node's next
sequence number and HLC stamp from the single ``sync_state`` row (``max(hlc + 1, now << 16)``),
which serialises writers on that row; SQLite serialises writers anyway, and on central the same
row lock is what keeps the feed numbers in commit order. Rows applied by sync are not logged:
SQLite triggers skip while ``sync_state.applying`` is 1 (set and cleared inside the applying
transaction); PostgreSQL ones while the transaction-local setting ``ctvms.sync_applying`` is on.
"""

# Table and column names in SQL text come from fixed lists (codec.MODES, the migration's
# SYNCED), never from a request; values are always bound parameters.
# ruff: noqa: S608

import uuid

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-03T21:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Sync: change log, state, offices and boxes, conflicts, dead letters, triggers"

SCHEMA_VERSION = 1

# name -> [(column, type, null/default clause)]; types: uuid, big, int, text, ts, bool, vcN.
TABLES = {
    "sync_state": [
        ("key", "vc16", "PRIMARY KEY NOT NULL"),
        ("node_id", "uuid", "NOT NULL"),
        ("office_code", "vc8", "NOT NULL DEFAULT ''"),
        ("last_seq", "big", "NOT NULL DEFAULT 0"),
        ("hlc", "big", "NOT NULL DEFAULT 0"),
        ("feed_seq", "big", "NOT NULL DEFAULT 0"),
        ("applying", "int", "NOT NULL DEFAULT 0"),
        ("schema_version", "int", f"NOT NULL DEFAULT {SCHEMA_VERSION}"),
        ("cursor", "big", "NOT NULL DEFAULT 0"),
        ("central_url", "vc300", "NOT NULL DEFAULT ''"),
        ("box_secret", "vc100", "NOT NULL DEFAULT ''"),
        ("enrolled_at", "ts", "NULL"),
        ("last_success", "ts", "NULL"),
        ("last_attempt", "ts", "NULL"),
        ("last_error", "text", "NOT NULL DEFAULT ''"),
        ("failures", "int", "NOT NULL DEFAULT 0"),
        ("clock_offset_ms", "big", "NOT NULL DEFAULT 0"),
        ("needs_update", "bool", "NOT NULL DEFAULT false"),
        ("numbering_blocked", "bool", "NOT NULL DEFAULT false"),
        ("blocked_reason", "text", "NOT NULL DEFAULT ''"),
        ("invoice_series", "vc16", "NOT NULL DEFAULT ''"),
    ],
    "sync_changes": [
        ("id", "uuid", "PRIMARY KEY NOT NULL"),
        ("seq", "big", "NOT NULL"),
        ("hlc", "big", "NOT NULL"),
        ("node_id", "uuid", "NOT NULL"),
        ("office_code", "vc8", "NOT NULL DEFAULT ''"),
        ("table_name", "vc40", "NOT NULL"),
        ("row_id", "uuid", "NOT NULL"),
        ("customer_id", "uuid", "NULL"),
        ("op", "vc8", "NOT NULL"),
        ("data", "text", "NOT NULL"),
        ("old", "text", "NOT NULL DEFAULT '{}'"),
        ("schema_version", "int", f"NOT NULL DEFAULT {SCHEMA_VERSION}"),
        ("sent", "bool", "NOT NULL DEFAULT false"),
        ("origin", "vc8", "NOT NULL DEFAULT 'local'"),
        ("feed_seq", "big", "NULL"),
        ("received_at", "ts", "NOT NULL DEFAULT current_timestamp"),
    ],
    "sync_offices": [
        ("code", "vc8", "PRIMARY KEY NOT NULL"),
        ("name", "vc200", "NOT NULL DEFAULT ''"),
        ("enroll_code_hash", "vc100", "NOT NULL DEFAULT ''"),
        ("enroll_expires_at", "ts", "NULL"),
        ("created_at", "ts", "NOT NULL DEFAULT current_timestamp"),
    ],
    "sync_boxes": [
        ("node_id", "uuid", "PRIMARY KEY NOT NULL"),
        ("office_code", "vc8", "NOT NULL DEFAULT ''"),
        ("secret_hash", "vc100", "NOT NULL DEFAULT ''"),
        ("enrolled_at", "ts", "NOT NULL DEFAULT current_timestamp"),
        ("revoked_at", "ts", "NULL"),
        ("last_seq", "big", "NOT NULL DEFAULT 0"),
        ("cursor", "big", "NOT NULL DEFAULT 0"),
        ("last_seen", "ts", "NULL"),
        ("clock_offset_ms", "big", "NOT NULL DEFAULT 0"),
        ("future_stamps", "int", "NOT NULL DEFAULT 0"),
        ("identity_conflicts", "int", "NOT NULL DEFAULT 0"),
        ("schema_version", "int", f"NOT NULL DEFAULT {SCHEMA_VERSION}"),
    ],
    "sync_conflicts": [
        ("id", "uuid", "PRIMARY KEY NOT NULL"),
        ("table_name", "vc40", "NOT NULL"),
        ("row_id", "uuid", "NOT NULL"),
        ("field", "vc60", "NOT NULL"),
        ("winner_value", "text", "NOT NULL"),
        ("winner_hlc", "big", "NOT NULL"),
        ("winner_node", "uuid", "NOT NULL"),
        ("loser_value", "text", "NOT NULL"),
        ("loser_hlc", "big", "NOT NULL"),
        ("loser_node", "uuid", "NOT NULL"),
        ("detected_at", "ts", "NOT NULL DEFAULT current_timestamp"),
        ("reviewed_at", "ts", "NULL"),
        ("reversed_at", "ts", "NULL"),
    ],
    "sync_dead_letters": [
        ("id", "uuid", "PRIMARY KEY NOT NULL"),
        ("change_id", "uuid", "NOT NULL"),
        ("node_id", "uuid", "NOT NULL"),
        ("office_code", "vc8", "NOT NULL DEFAULT ''"),
        ("table_name", "vc40", "NOT NULL DEFAULT ''"),
        ("row_id", "uuid", "NULL"),
        ("change", "text", "NOT NULL"),
        ("reason", "text", "NOT NULL"),
        ("created_at", "ts", "NOT NULL DEFAULT current_timestamp"),
        ("resolved_at", "ts", "NULL"),
    ],
    "sync_overpayments": [
        ("id", "uuid", "PRIMARY KEY NOT NULL"),
        ("customer", "uuid", "NOT NULL"),
        ("excess", "int", "NOT NULL"),
        ("detail", "text", "NOT NULL DEFAULT ''"),
        ("detected_at", "ts", "NOT NULL DEFAULT current_timestamp"),
        ("reviewed_at", "ts", "NULL"),
    ],
    "sync_aliases": [
        ("table_name", "vc40", "NOT NULL"),
        ("remote_id", "uuid", "PRIMARY KEY NOT NULL"),
        ("local_id", "uuid", "NOT NULL"),
    ],
    "sync_mail_status": [
        ("id", "uuid", "PRIMARY KEY NOT NULL"),
        ("office_code", "vc8", "NOT NULL DEFAULT ''"),
        ("kind", "vc32", "NOT NULL DEFAULT ''"),
        ("to_addr", "vc254", "NOT NULL DEFAULT ''"),
        ("status", "vc16", "NOT NULL DEFAULT ''"),
        ("attempts", "int", "NOT NULL DEFAULT 0"),
        ("last_error", "text", "NOT NULL DEFAULT ''"),
        ("created_at", "ts", "NULL"),
        ("sent_at", "ts", "NULL"),
    ],
}

INDEXES = (
    "CREATE UNIQUE INDEX sync_changes_node_seq ON sync_changes (node_id, seq)",
    "CREATE INDEX sync_changes_pending ON sync_changes (sent, origin, seq)",
    "CREATE INDEX sync_changes_row ON sync_changes (table_name, row_id)",
    "CREATE UNIQUE INDEX sync_changes_feed ON sync_changes (feed_seq)",
    "CREATE INDEX sync_boxes_office ON sync_boxes (office_code)",
    "CREATE INDEX sync_conflicts_open ON sync_conflicts (reviewed_at, detected_at)",
    "CREATE INDEX sync_dead_letters_change ON sync_dead_letters (change_id)",
    "CREATE INDEX sync_overpayments_customer ON sync_overpayments (customer)",
    "CREATE INDEX customers_office ON customers (office)",
)

# Synced tables: frozen column lists, and how to find the customer a row belongs to (which
# office's boxes receive it). The outbox sends only delivery status, never bodies (they can hold
# one-time codes and passwords).
SYNCED = {
    "plans": (
        "id service name monthly_price description retired_at created_at updated_at",
        None,
    ),
    "customers": (
        "id crf name search_text birth_date house area district state country postal_code "
        "id_doc_type id_doc_number mobile email archived_at created_at updated_at office",
        "NEW.id",
    ),
    "connections": (
        "id customer service plan device_id registered_on expires_on status created_at updated_at",
        "NEW.customer",
    ),
    "billing_connections": (
        "id connection opening_through rows_through created_at",
        "(SELECT customer FROM connections WHERE id = NEW.connection)",
    ),
    "billing_charges": (
        "id customer connection service year month state plan plan_name amount paid opening "
        "billed_at created_at",
        "NEW.customer",
    ),
    "billing_payments": (
        "id number office_code customer amount mode reference target received_by "
        "received_by_name actor_role idempotency_key paid_on created_at credit_after due_after "
        "snapshot",
        "NEW.customer",
    ),
    "billing_allocations": (
        "id payment charge amount",
        "(SELECT customer FROM billing_payments WHERE id = NEW.payment)",
    ),
    "billing_reversals": (
        "id payment reason reversed_by reversed_by_name created_at",
        "(SELECT customer FROM billing_payments WHERE id = NEW.payment)",
    ),
    "billing_accounts": ("id customer credit updated_at", "NEW.customer"),
    "complaints": (
        "id number customer category message status raised_at raised_by read_at resolved_at "
        "resolution updated_at",
        "NEW.customer",
    ),
    "complaint_events": (
        "id complaint at kind actor_id actor text visible_to_customer",
        "(SELECT customer FROM complaints WHERE id = NEW.complaint)",
    ),
    "outbox": (
        "id message_id kind to_addr status attempts last_error created_at sent_at",
        None,
    ),
}


def _type(kind: str, engine_type: str) -> str:
    if kind.startswith("vc"):
        return f"VARCHAR({kind[2:]})"
    pg = engine_type == "postgres"
    return {
        "uuid": "UUID",
        "big": "BIGINT" if pg else "INTEGER",
        "int": "INTEGER",
        "text": "TEXT",
        "ts": "TIMESTAMPTZ",
        "bool": "BOOLEAN",
    }[kind]


def table_ddl(engine_type: str) -> list[str]:
    out = []
    for name, columns in TABLES.items():
        cols = ", ".join(f'"{c}" {_type(k, engine_type)} {extra}' for c, k, extra in columns)
        out.append(f'CREATE TABLE "{name}" ({cols})')
    return out


# -- SQLite triggers ---------------------------------------------------------------------------

_SQLITE_NOW_MS = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
_SQLITE_UUID7 = (
    "(SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7' || substr(r, 1, 3) || '-' || "
    "substr('89ab', 1 + (abs(random()) % 4), 1) || substr(r, 4, 3) || '-' || substr(r, 7, 12) "
    f"FROM (SELECT printf('%012x', {_SQLITE_NOW_MS}) AS h, lower(hex(randomblob(10))) AS r))"
)
_SQLITE_SKIP = "(SELECT applying FROM sync_state WHERE key = 'local') = 0"
_SQLITE_TICK = (
    "UPDATE sync_state SET last_seq = last_seq + 1, "
    f"hlc = max(hlc + 1, {_SQLITE_NOW_MS} * 65536) WHERE key = 'local';"
)


def _sqlite_log(table: str, customer: str | None, op: str, data: str, old: str) -> str:
    return (
        "INSERT INTO sync_changes (id, seq, hlc, node_id, office_code, table_name, row_id, "
        "customer_id, op, data, old, schema_version, sent, origin) "
        f"SELECT {_SQLITE_UUID7}, s.last_seq, s.hlc, s.node_id, s.office_code, '{table}', "
        f"NEW.id, {customer or 'NULL'}, '{op}', {data}, {old}, s.schema_version, 0, 'local' "
        "FROM sync_state s WHERE s.key = 'local';"
    )


def sqlite_triggers(table: str, columns: list[str], customer: str | None) -> list[str]:
    row_json = "json_object(" + ", ".join(f"'{c}', t.\"{c}\"" for c in columns) + ")"
    insert_data = f'(SELECT {row_json} FROM "{table}" t WHERE t.id = NEW.id)'
    steps = ""
    if table == "customers":
        # A customer belongs to the office of the box that registered it.
        steps = (
            "UPDATE sync_state SET applying = 1 WHERE key = 'local'; "
            "UPDATE customers SET office = (SELECT office_code FROM sync_state "
            "WHERE key = 'local') WHERE id = NEW.id AND office = ''; "
            "UPDATE sync_state SET applying = 0 WHERE key = 'local'; "
        )
    insert = (
        f'CREATE TRIGGER sync_log_{table}_insert AFTER INSERT ON "{table}" '
        f"WHEN {_SQLITE_SKIP} BEGIN {steps}{_SQLITE_TICK} "
        f"{_sqlite_log(table, customer, 'insert', insert_data, chr(39) + '{}' + chr(39))} END"
    )
    differs = " OR ".join(f'OLD."{c}" IS NOT NEW."{c}"' for c in columns)

    def changed(side: str) -> str:
        parts = " UNION ALL ".join(
            f'SELECT \'{c}\' AS k, {side}."{c}" AS v WHERE OLD."{c}" IS NOT NEW."{c}"'
            for c in columns
        )
        return f"(SELECT json_group_object(k, v) FROM ({parts}))"

    update = (
        f'CREATE TRIGGER sync_log_{table}_update AFTER UPDATE ON "{table}" '
        f"WHEN {_SQLITE_SKIP} AND ({differs}) BEGIN {_SQLITE_TICK} "
        f"{_sqlite_log(table, customer, 'update', changed('NEW'), changed('OLD'))} END"
    )
    return [insert, update]


# -- PostgreSQL triggers -----------------------------------------------------------------------

_PG_BODY = """
CREATE FUNCTION sync_log_{table}() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    st record;
    newj jsonb;
    oldj jsonb;
    d jsonb;
    od jsonb;
    ms bigint;
    r text;
BEGIN
    IF coalesce(current_setting('ctvms.sync_applying', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    newj := jsonb_build_object({new_pairs});
    IF TG_OP = 'UPDATE' THEN
        oldj := jsonb_build_object({old_pairs});
        SELECT coalesce(jsonb_object_agg(n.key, n.value), '{{}}'::jsonb),
               coalesce(jsonb_object_agg(n.key, o.value), '{{}}'::jsonb)
          INTO d, od
          FROM jsonb_each(newj) n JOIN jsonb_each(oldj) o USING (key)
         WHERE n.value IS DISTINCT FROM o.value;
        IF d = '{{}}'::jsonb THEN
            RETURN NULL;
        END IF;
    ELSE
        d := newj;
        od := '{{}}'::jsonb;
    END IF;
    ms := floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    UPDATE sync_state SET last_seq = last_seq + 1, feed_seq = feed_seq + 1,
           hlc = greatest(hlc + 1, ms * 65536)
     WHERE key = 'local'
     RETURNING last_seq, feed_seq, hlc, node_id, office_code, schema_version INTO st;
    r := replace(gen_random_uuid()::text, '-', '');
    INSERT INTO sync_changes (id, seq, hlc, node_id, office_code, table_name, row_id,
                              customer_id, op, data, old, schema_version, sent, origin,
                              feed_seq)
    VALUES ((lpad(to_hex(ms), 12, '0') || '7' || substr(r, 1, 3)
             || substr('89ab', 1 + get_byte(decode(substr(r, 4, 2), 'hex'), 0) % 4, 1)
             || substr(r, 6, 15))::uuid,
            st.last_seq, st.hlc, st.node_id, st.office_code, '{table}', NEW.id,
            {customer}, lower(TG_OP), d::text, od::text, st.schema_version, false, 'local',
            st.feed_seq);
    RETURN NULL;
END
$fn$
"""

_PG_CUSTOMER_OFFICE = """
CREATE FUNCTION sync_customer_office() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.office = '' THEN
        NEW.office := (SELECT office_code FROM sync_state WHERE key = 'local');
    END IF;
    RETURN NEW;
END
$fn$
"""


def pg_triggers(table: str, columns: list[str], customer: str | None) -> list[str]:
    def pairs(side: str) -> str:
        return ", ".join(f"'{c}', {side}.\"{c}\"" for c in columns)

    body = _PG_BODY.format(
        table=table,
        new_pairs=pairs("NEW"),
        old_pairs=pairs("OLD"),
        customer=customer or "NULL",
    )
    out = [body]
    if table == "customers":
        out += [
            _PG_CUSTOMER_OFFICE,
            "CREATE TRIGGER sync_customer_office BEFORE INSERT ON customers "
            "FOR EACH ROW EXECUTE FUNCTION sync_customer_office()",
        ]
    out.append(
        f'CREATE TRIGGER sync_log_{table} AFTER INSERT OR UPDATE ON "{table}" '
        f"FOR EACH ROW EXECUTE FUNCTION sync_log_{table}()"
    )
    return out


def trigger_ddl(engine_type: str) -> list[str]:
    out = []
    for table, (columns, customer) in SYNCED.items():
        cols = columns.split()
        build = pg_triggers if engine_type == "postgres" else sqlite_triggers
        out += build(table, cols, customer)
    return out


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="ctvms", description=DESCRIPTION)

    async def create():
        engine = engine_finder()
        await engine.run_ddl(
            "ALTER TABLE customers ADD COLUMN office VARCHAR(8) NOT NULL DEFAULT ''"
        )
        # Existing rows are this box's (a central instance has none before sync).
        for statement in table_ddl(engine.engine_type):
            await engine.run_ddl(statement)
        for statement in INDEXES:
            await engine.run_ddl(statement)
        await engine.run_ddl(
            f"INSERT INTO sync_state (key, node_id) VALUES ('local', '{uuid.uuid4()}')"
        )
        for statement in trigger_ddl(engine.engine_type):
            await engine.run_ddl(statement)

    manager.add_raw(create)
    return manager
