from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-04T04:45:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Index billing charges by customer (central's balance recomputation)"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="ctvms", description=DESCRIPTION)

    async def add_index():
        # Central recomputes a customer's balance from all of their charges after every push
        # batch that carried their payments; billing_charges_open is partial (open months only),
        # so without this index each customer cost a scan of every charge of every office.
        await engine_finder().run_ddl(
            "CREATE INDEX IF NOT EXISTS billing_charges_customer ON billing_charges (customer)"
        )

    manager.add_raw(add_index)
    return manager
