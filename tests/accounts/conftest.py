from tests.system.smtp import mailbox, smtp_client, smtp_settings  # noqa: F401
