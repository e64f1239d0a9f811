"""The schedule follows the office's wall clock, whatever UTC offset it has that day."""

from __future__ import annotations

import datetime as dt

from appliance.jobs.queue import configure_queue
from appliance.jobs.tasks import office_crontab
from tests.conftest import make_settings


def _utc(*args) -> dt.datetime:
    # huey hands periodic validators a naive UTC timestamp.
    return dt.datetime(*args)


def test_just_after_midnight_in_sao_paulo(tmp_path):
    configure_queue(make_settings(tmp_path, timezone="America/Sao_Paulo"), immediate=True)
    daily = office_crontab(minute="1", hour="0")
    assert daily(_utc(2027, 3, 15, 3, 1))  # 00:01 at UTC-3
    assert not daily(_utc(2027, 3, 15, 0, 1))  # 21:01 the evening before


def test_daylight_saving_moves_the_utc_hour(tmp_path):
    configure_queue(make_settings(tmp_path, timezone="Europe/Lisbon"), immediate=True)
    daily = office_crontab(minute="1", hour="0")
    assert daily(_utc(2027, 1, 10, 0, 1))  # winter: UTC+0
    assert daily(_utc(2027, 7, 9, 23, 1))  # summer: UTC+1, so the day before in UTC
    assert not daily(_utc(2027, 7, 10, 0, 1))


def test_half_hour_zone_and_first_of_month(tmp_path):
    configure_queue(make_settings(tmp_path, timezone="Asia/Kolkata"), immediate=True)
    monthly = office_crontab(minute="10", hour="0", day="1")
    assert monthly(_utc(2027, 4, 30, 18, 40))  # 00:10 on 1 May at UTC+5:30
    assert not monthly(_utc(2027, 5, 1, 0, 10))
