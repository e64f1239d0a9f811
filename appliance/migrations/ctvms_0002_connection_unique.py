from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-03T19:50:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "At most one connection per service and customer"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="ctvms", description=DESCRIPTION)

    async def unique_connection_per_service():
        await engine_finder().run_ddl(
            "CREATE UNIQUE INDEX connections_customer_service ON connections (customer, service)"
        )

    manager.add_raw(unique_connection_per_service)
    return manager
