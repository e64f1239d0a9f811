from __future__ import annotations

from collections.abc import Iterator

import pytest

from appliance.settings import Settings
from tests.complaints.mailbox import Mailbox, delivering_to, running_mailbox


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with running_mailbox() as box:
        yield box


@pytest.fixture
def smtp_settings(settings: Settings, mailbox: Mailbox) -> Settings:
    return delivering_to(settings, mailbox)
