from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-04T03:55:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Payment reports at central can be limited to one office"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="ctvms", description=DESCRIPTION)

    async def add_column():
        await engine_finder().run_ddl(
            "ALTER TABLE report_jobs ADD COLUMN office VARCHAR(8) NOT NULL DEFAULT ''"
        )

    manager.add_raw(add_column)
    return manager
