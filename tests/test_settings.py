"""Settings: the registry, environment parsing, clear errors, the stored secret key."""

from __future__ import annotations

import os
import re
import stat
import threading
from pathlib import Path

import pytest

from appliance.settings import Settings, SettingsError, read_dotenv, registry

README = Path(__file__).resolve().parent.parent / "README.md"


def env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"CTVMS_DATA_DIR": str(tmp_path / "data"), **values}


def test_every_setting_is_documented_in_the_readme():
    text = README.read_text()
    missing = [s.env for s in registry() if f"`{s.env}`" not in text]
    assert not missing, f"settings missing from README.md: {missing}"


def test_every_setting_name_starts_with_ctvms_and_has_help():
    names = [s.env for s in registry()]
    assert len(names) == len(set(names))
    for setting in registry():
        assert re.fullmatch(r"CTVMS_[A-Z0-9_]+", setting.env)
        assert len(setting.help) > 10, setting.env


def test_the_settings_the_issue_names_are_all_there():
    names = {s.env for s in registry()}
    assert {
        "CTVMS_DATABASE_URL",
        "CTVMS_DATA_DIR",
        "CTVMS_SECRET_KEY",
        "CTVMS_OFFICE_CODE",
        "CTVMS_OFFICE_NAME",
        "CTVMS_LOCALE",
        "CTVMS_CURRENCY",
        "CTVMS_TIMEZONE",
        "CTVMS_SMTP_HOST",
        "CTVMS_SMTP_PORT",
        "CTVMS_SMTP_USER",
        "CTVMS_SMTP_PASSWORD",
        "CTVMS_SMTP_TLS",
        "CTVMS_MAIL_FROM",
        "CTVMS_MIN_PAYMENT",
    } <= names


def test_defaults(tmp_path):
    s = Settings.from_env(env(tmp_path))
    assert s.data_dir == tmp_path / "data"
    assert s.is_sqlite
    assert s.sqlite_path == tmp_path / "data" / "ctvms.sqlite3"
    assert s.locale == "pt_BR"
    assert s.currency == "BRL"
    assert s.timezone == "America/Sao_Paulo"
    assert s.min_payment == 250 and s.min_payment_minor == 25_000
    assert s.smtp_tls == "starttls" and s.smtp_port == 587
    assert s.role == "appliance"
    assert s.secure_cookies is False
    assert s.queue_path == tmp_path / "data" / "jobs.sqlite3"


def test_values_are_read_and_converted(tmp_path):
    s = Settings.from_env(
        env(
            tmp_path,
            CTVMS_DATABASE_URL="postgresql://u:pw@db.example:6543/ctvms",
            CTVMS_OFFICE_CODE="AB12",
            CTVMS_OFFICE_NAME="  Cabo Norte  ",
            CTVMS_LOCALE="en",
            CTVMS_SMTP_PORT=" 2525 ",
            CTVMS_SMTP_TLS="ssl",
            CTVMS_MIN_PAYMENT="100",
            CTVMS_SECURE_COOKIES="yes",
            CTVMS_TIMEZONE="Europe/Lisbon",
        )
    )
    assert not s.is_sqlite
    assert s.office_code == "AB12"
    assert s.office_name == "Cabo Norte"
    assert s.locale == "en"
    assert s.smtp_port == 2525
    assert s.smtp_tls == "ssl"
    assert s.min_payment_minor == 10_000
    assert s.secure_cookies is True
    assert str(s.tz) == "Europe/Lisbon"


def test_sqlite_url_forms(tmp_path):
    s = Settings.from_env(env(tmp_path, CTVMS_DATABASE_URL=f"sqlite:///{tmp_path}/x.db"))
    assert s.is_sqlite and s.sqlite_path == tmp_path / "x.db"
    s = Settings.from_env(env(tmp_path, CTVMS_DATABASE_URL=str(tmp_path / "plain.db")))
    assert s.is_sqlite and s.sqlite_path == tmp_path / "plain.db"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CTVMS_SMTP_PORT", "smtp", "CTVMS_SMTP_PORT must be a whole number"),
        ("CTVMS_SMTP_PORT", "70000", "CTVMS_SMTP_PORT"),
        ("CTVMS_MIN_PAYMENT", "2.5", "CTVMS_MIN_PAYMENT must be a whole number"),
        ("CTVMS_MIN_PAYMENT", "-1", "CTVMS_MIN_PAYMENT cannot be negative"),
        ("CTVMS_SMTP_TLS", "tls", "CTVMS_SMTP_TLS must be one of none, starttls, ssl"),
        ("CTVMS_LOCALE", "fr", "CTVMS_LOCALE must be one of"),
        ("CTVMS_ROLE", "edge", "CTVMS_ROLE must be one of"),
        ("CTVMS_OFFICE_CODE", "ab", "CTVMS_OFFICE_CODE must be 2 to 6 capital letters"),
        ("CTVMS_OFFICE_CODE", "TOOLONG1", "CTVMS_OFFICE_CODE"),
        ("CTVMS_OFFICE_CODE", "A-1", "CTVMS_OFFICE_CODE"),
        ("CTVMS_TIMEZONE", "Mars/Olympus", "CTVMS_TIMEZONE 'Mars/Olympus' is not a known zone"),
        ("CTVMS_SECURE_COOKIES", "maybe", "CTVMS_SECURE_COOKIES must be on or off"),
        ("CTVMS_SESSION_IDLE_MINUTES", "0", "CTVMS_SESSION_IDLE_MINUTES"),
        ("CTVMS_SESSION_MAX_HOURS", "-3", "CTVMS_SESSION_MAX_HOURS"),
        ("CTVMS_DATABASE_URL", "mysql://u@h/db", "CTVMS_DATABASE_URL"),
        ("CTVMS_CURRENCY", "reais", "CTVMS_CURRENCY"),
    ],
)
def test_bad_values_give_a_clear_error_naming_the_variable(tmp_path, name, value, message):
    with pytest.raises(SettingsError) as exc:
        Settings.from_env(env(tmp_path, **{name: value}))
    assert message in str(exc.value)
    # The message states the rule, and never dumps a traceback-ish repr of the dataclass.
    assert "Settings(" not in str(exc.value)


def test_secret_key_is_generated_once_stored_0600_and_reused(tmp_path):
    first = Settings.from_env(env(tmp_path))
    key_file = tmp_path / "data" / "secret_key"
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first.secret_key) >= 40
    assert key_file.read_text().strip() == first.secret_key
    second = Settings.from_env(env(tmp_path))
    assert second.secret_key == first.secret_key
    other = Settings.from_env({"CTVMS_DATA_DIR": str(tmp_path / "other")})
    assert other.secret_key != first.secret_key


def test_given_secret_key_wins_and_nothing_is_written(tmp_path):
    s = Settings.from_env(env(tmp_path, CTVMS_SECRET_KEY="k" * 40))
    assert s.secret_key == "k" * 40
    assert not (tmp_path / "data" / "secret_key").exists()


def test_processes_starting_together_agree_on_one_secret_key(tmp_path):
    """`ctvms run` starts the web server and the worker at once on a fresh box."""
    from appliance.settings import _stored_secret

    for attempt in range(20):
        data = tmp_path / f"box{attempt}"
        barrier = threading.Barrier(6)
        keys: list[str] = []
        errors: list[BaseException] = []

        def start(data=data, barrier=barrier, keys=keys, errors=errors):
            barrier.wait()
            try:
                keys.append(_stored_secret(data))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert len(set(keys)) == 1 and keys[0]
        assert (data / "secret_key").read_text() == keys[0]
        assert sorted(p.name for p in data.iterdir()) == ["secret_key"]


def test_an_empty_secret_key_file_is_a_clear_error(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "secret_key").write_text("")
    with pytest.raises(SettingsError, match="secret_key is empty"):
        Settings.from_env({"CTVMS_DATA_DIR": str(data)})


def test_dotenv_is_read_and_the_environment_wins(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(
        "# office settings\n"
        'export CTVMS_OFFICE_NAME="Cabo Sul"\n'
        "CTVMS_OFFICE_CODE='CS'\n"
        "CTVMS_SMTP_PORT=465\n"
        "not a setting line\n"
        f"CTVMS_DATA_DIR={tmp_path / 'data'}\n"
    )
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("CTVMS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CTVMS_SMTP_PORT", "2525")
    s = Settings.from_env()
    assert s.office_name == "Cabo Sul"
    assert s.office_code == "CS"
    assert s.smtp_port == 2525
    assert read_dotenv(tmp_path / "missing.env") == []


def test_config_description_masks_secrets(tmp_path):
    s = Settings.from_env(
        env(
            tmp_path,
            CTVMS_DATABASE_URL="postgresql://ctvms:db-pass-9@127.0.0.1:5432/ctvms",
            CTVMS_SMTP_PASSWORD="smtp-pass-7",
            CTVMS_SECRET_KEY="s" * 48,
            CTVMS_REDIS_URL="redis://:redis-pass-3@127.0.0.1:6379/0",
        )
    )
    rows = {name: value for name, value, _help in s.described()}
    assert set(rows) == {x.env for x in registry()}
    text = "\n".join(rows.values())
    for secret in ("db-pass-9", "smtp-pass-7", "s" * 48, "redis-pass-3"):
        assert secret not in text
    assert rows["CTVMS_DATABASE_URL"] == "postgresql://***@127.0.0.1:5432/ctvms"
    assert rows["CTVMS_SMTP_PASSWORD"] == "********"
    assert rows["CTVMS_OFFICE_CODE"] == "MM"
