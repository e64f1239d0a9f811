from __future__ import annotations

import os

import pytest

from tests.conftest import SECRET


def cli_env(settings) -> dict[str, str]:
    """Environment for a real ``ctvms`` process working on the test's database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTVMS_")}
    env.update(
        CTVMS_DATA_DIR=str(settings.data_dir),
        CTVMS_DATABASE_URL=settings.database_url,
        CTVMS_SECRET_KEY=SECRET,
        CTVMS_OFFICE_CODE=settings.office_code,
        CTVMS_OFFICE_NAME=settings.office_name,
        CTVMS_TIMEZONE=settings.timezone,
        CTVMS_LOCALE="en",
        CTVMS_SMTP_HOST=settings.smtp_host,
        CTVMS_SMTP_PORT=str(settings.smtp_port),
        CTVMS_SMTP_TLS=settings.smtp_tls,
        CTVMS_LOG_LEVEL="INFO",
    )
    return env


@pytest.fixture
def env_for():
    return cli_env


_KEEP = object()


async def set_connection(connection_id, *, expires_on=_KEEP, registered_on=_KEEP, status=_KEEP):
    """Write a connection's dates and status as given, past billing's own bookkeeping.

    Saving a customer through the service makes the expiry agree with the month grid (billing),
    so a status test that needs an exact expiry day (today, 60 days ago) writes it here.
    """
    from appliance.customers.tables import Connection

    values = {}
    if expires_on is not _KEEP:
        values[Connection.expires_on] = expires_on
    if registered_on is not _KEEP:
        values[Connection.registered_on] = registered_on
    if status is not _KEEP:
        values[Connection.status] = status
    await Connection.update(values).where(Connection.id == connection_id)
