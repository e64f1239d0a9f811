from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-03T20:14:39:000000"
VERSION = "1.38.0"
DESCRIPTION = "Covering indexes for the dashboard counts and the customer search"

# Measured on 20,000 demo customers (bench/README.md): the dashboard's counts went from a join
# of every connection with its customer (~21 ms + ~14 ms) to scans of these indexes (~3 ms);
# the search's count and page are read from one narrow index instead of the whole table.
INDEXES = (
    # connection_counts(): service/status groups without touching the table.
    "CREATE INDEX connections_counts ON connections (service, status, customer)",
    # renewals_due(): the connections expiring on one day.
    "CREATE INDEX connections_expiry ON connections (expires_on, service, customer)",
    # Archived customers are few: the counts subtract them through this small partial index.
    "CREATE INDEX customers_archived ON customers (id) WHERE archived_at IS NOT NULL",
    # search_customers(): the LIKE scan, the count and the page's ordering by name.
    "CREATE INDEX customers_search ON customers (search_text, archived_at, name, id)",
)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="ctvms", description=DESCRIPTION)

    async def create_indexes():
        for statement in INDEXES:
            await engine_finder().run_ddl(statement)

    async def drop_indexes():
        for statement in INDEXES:
            name = statement.split()[2]
            await engine_finder().run_ddl(f"DROP INDEX IF EXISTS {name}")

    manager.add_raw(create_indexes)
    manager.add_raw_backwards(drop_indexes)
    return manager
