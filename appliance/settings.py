"""Settings: one registry of every tunable value, read from the environment.

Each setting names its environment variable, its default and a line of help. The registry is the
single source for ``ctvms config``, the README table (a test checks that every name is documented)
and :class:`Settings`, which the app factory builds; nothing here is read at import time.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class SettingsError(ValueError):
    """A setting has a value the appliance cannot work with."""


@dataclass(frozen=True)
class Setting:
    env: str
    default: str | None
    help: str
    secret: bool = False


def _setting(env: str, default: str | None, help: str, *, secret: bool = False) -> Any:
    return field(metadata={"setting": Setting(env, default, help, secret)})


SMTP_TLS_MODES = ("none", "starttls", "ssl")
ROLES = ("appliance", "central")
LOCALES = ("pt_BR", "en")


@dataclass(frozen=True)
class Settings:
    """Effective settings of one process (web server, worker or command)."""

    data_dir: Path = _setting(
        "CTVMS_DATA_DIR", "./var", "Folder for the database, keys, job queue, invoices and backups."
    )
    database_url: str = _setting(
        "CTVMS_DATABASE_URL",
        None,
        "Database URL: a SQLite path "
        "(sqlite:///path/ctvms.sqlite3, default <data dir>/ctvms.sqlite3) "
        "or postgresql://user:password@host:port/db.",
        secret=True,
    )
    secret_key: str = _setting(
        "CTVMS_SECRET_KEY",
        None,
        "Key that signs tokens. Generated and "
        "stored in <data dir>/secret_key on first run when not given.",
        secret=True,
    )
    role: str = _setting("CTVMS_ROLE", "appliance", "appliance (one office, SQLite) or central.")
    office_code: str = _setting(
        "CTVMS_OFFICE_CODE",
        "MM",
        "Short office code (2-6 letters or digits); prefixes CRF and invoice numbers.",
    )
    office_name: str = _setting(
        "CTVMS_OFFICE_NAME", "CTVMS Office", "Office name shown on pages, e-mails and invoices."
    )
    office_address: str = _setting(
        "CTVMS_OFFICE_ADDRESS", "", "Office postal address printed on invoices."
    )
    locale: str = _setting("CTVMS_LOCALE", "pt_BR", "Default language and formats: pt_BR or en.")
    currency: str = _setting("CTVMS_CURRENCY", "BRL", "ISO 4217 currency code of all amounts.")
    timezone: str = _setting(
        "CTVMS_TIMEZONE",
        "America/Sao_Paulo",
        "IANA time zone of the office; days and months begin at its midnight.",
    )
    min_payment: int = _setting(
        "CTVMS_MIN_PAYMENT",
        "250",
        "Smallest payment accepted, in whole currency units, unless the whole due is smaller.",
    )
    pix_key: str = _setting(
        "CTVMS_PIX_KEY",
        "",
        "PIX key (CPF/CNPJ, e-mail, phone or random key) for payment QR codes when the "
        "currency is BRL; empty shows no QR code.",
    )
    pix_merchant_name: str = _setting(
        "CTVMS_PIX_MERCHANT_NAME",
        "",
        "Receiver name in the PIX QR code (up to 25 letters, accents removed); "
        "empty uses the office name.",
    )
    pix_merchant_city: str = _setting(
        "CTVMS_PIX_MERCHANT_CITY",
        "",
        "Receiver city in the PIX QR code (up to 15 letters); needed with CTVMS_PIX_KEY.",
    )
    upi_vpa: str = _setting(
        "CTVMS_UPI_VPA",
        "",
        "UPI address (VPA, like office@bank) for payment QR codes when the currency is INR; "
        "empty shows no QR code.",
    )
    upi_payee_name: str = _setting(
        "CTVMS_UPI_PAYEE_NAME", "", "Payee name in the UPI QR code; empty uses the office name."
    )
    smtp_host: str = _setting(
        "CTVMS_SMTP_HOST", "", "SMTP server for outgoing e-mail; empty keeps messages queued."
    )
    smtp_port: int = _setting("CTVMS_SMTP_PORT", "587", "SMTP server port.")
    smtp_user: str = _setting("CTVMS_SMTP_USER", "", "SMTP login name, if the server needs one.")
    smtp_password: str = _setting(
        "CTVMS_SMTP_PASSWORD", "", "SMTP password (for Gmail, an app password).", secret=True
    )
    smtp_tls: str = _setting(
        "CTVMS_SMTP_TLS", "starttls", "SMTP transport security: none, starttls or ssl."
    )
    mail_from: str = _setting(
        "CTVMS_MAIL_FROM", "ctvms@localhost", "Sender address of outgoing e-mail."
    )
    reminder_interval_days: int = _setting(
        "CTVMS_REMINDER_INTERVAL_DAYS",
        "7",
        "A customer gets at most one payment reminder in this many days, "
        'unless the admin ticks "send anyway".',
    )
    session_idle_minutes: int = _setting(
        "CTVMS_SESSION_IDLE_MINUTES",
        "60",
        "A session ends after this many minutes without a request.",
    )
    session_max_hours: int = _setting(
        "CTVMS_SESSION_MAX_HOURS",
        "12",
        "A session ends this many hours after login, whatever the activity.",
    )
    secure_cookies: bool = _setting(
        "CTVMS_SECURE_COOKIES",
        "off",
        "on when the UI is served over HTTPS, so cookies are only sent over TLS.",
    )
    central_url: str = _setting(
        "CTVMS_CENTRAL_URL", "", "Address of the central instance this box syncs with."
    )
    redis_url: str = _setting(
        "CTVMS_REDIS_URL",
        "",
        "Redis URL for the job queue on central; empty uses a SQLite queue in the data folder.",
        secret=True,
    )
    advertise: bool = _setting(
        "CTVMS_ADVERTISE",
        "on",
        "on: announce the web UI over mDNS (zeroconf) on the interfaces it serves on; off: don't.",
    )
    mdns_hostname: str = _setting(
        "CTVMS_MDNS_HOSTNAME",
        "ctvms.local",
        "Host name the box announces over mDNS; give each box on one LAN its own.",
    )
    backup_dir: str = _setting(
        "CTVMS_BACKUP_DIR",
        "",
        "Folder of the nightly backups; empty means <data dir>/backups.",
    )
    backup_keep: int = _setting(
        "CTVMS_BACKUP_KEEP", "7", "Number of nightly backups kept; older ones are deleted."
    )

    # -- derived values ---------------------------------------------------------------------

    @property
    def is_sqlite(self) -> bool:
        return not self.database_url.startswith(("postgres://", "postgresql://"))

    @property
    def sqlite_path(self) -> Path:
        url = self.database_url
        return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else Path(url)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def min_payment_minor(self) -> int:
        return self.min_payment * 100

    @property
    def queue_path(self) -> Path:
        return self.data_dir / "jobs.sqlite3"

    @property
    def invoices_dir(self) -> Path:
        return self.data_dir / "invoices"

    @property
    def backup_path(self) -> Path:
        return Path(self.backup_dir).expanduser() if self.backup_dir else self.data_dir / "backups"

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``environ`` (default: ``os.environ`` plus ``.env``).

        ``overrides`` take precedence; tests use them to point at their own folders.
        """
        env = dict(read_dotenv(Path(".env"))) if environ is None else {}
        env.update(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in overrides:
                values[f.name] = overrides[f.name]
                continue
            meta: Setting = f.metadata["setting"]
            raw = env.get(meta.env, meta.default)
            values[f.name] = _convert(f.name, meta.env, raw)
        data_dir = Path(values["data_dir"]).expanduser()
        values["data_dir"] = data_dir
        if not values["database_url"]:
            values["database_url"] = f"sqlite:///{data_dir / 'ctvms.sqlite3'}"
        if not values["secret_key"]:
            values["secret_key"] = _stored_secret(data_dir)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.smtp_tls not in SMTP_TLS_MODES:
            raise SettingsError(f"CTVMS_SMTP_TLS must be one of {', '.join(SMTP_TLS_MODES)}.")
        if self.role not in ROLES:
            raise SettingsError(f"CTVMS_ROLE must be one of {', '.join(ROLES)}.")
        if self.locale not in LOCALES:
            raise SettingsError(f"CTVMS_LOCALE must be one of {', '.join(LOCALES)}.")
        code = self.office_code
        if not (2 <= len(code) <= 6 and code.isascii() and code.isalnum() and code.isupper()):
            raise SettingsError("CTVMS_OFFICE_CODE must be 2 to 6 capital letters or digits.")
        if self.min_payment < 0:
            raise SettingsError("CTVMS_MIN_PAYMENT cannot be negative.")
        if self.reminder_interval_days < 0:
            raise SettingsError("CTVMS_REMINDER_INTERVAL_DAYS cannot be negative.")
        if not re.fullmatch(r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+local", self.mdns_hostname):
            raise SettingsError(
                "CTVMS_MDNS_HOSTNAME must be a lower-case name ending in .local, like ctvms.local."
            )
        if self.backup_keep < 1:
            raise SettingsError("CTVMS_BACKUP_KEEP must be 1 or more.")
        if not 1 <= self.smtp_port <= 65535:
            raise SettingsError("CTVMS_SMTP_PORT must be between 1 and 65535.")
        if self.session_idle_minutes < 1:
            raise SettingsError("CTVMS_SESSION_IDLE_MINUTES must be at least 1.")
        if self.session_max_hours < 1:
            raise SettingsError("CTVMS_SESSION_MAX_HOURS must be at least 1.")
        scheme, sep, _rest = self.database_url.partition("://")
        if sep and scheme not in ("sqlite", "postgres", "postgresql"):
            raise SettingsError(
                "CTVMS_DATABASE_URL must be sqlite:///path or postgresql://user@host/db, "
                f"not a {scheme}:// address."
            )
        from babel.numbers import is_currency

        if not is_currency(self.currency):
            raise SettingsError(
                f"CTVMS_CURRENCY {self.currency!r} is not an ISO 4217 code such as BRL."
            )
        if self.pix_key and not self.pix_merchant_city:
            raise SettingsError("CTVMS_PIX_MERCHANT_CITY is needed with CTVMS_PIX_KEY.")
        if self.upi_vpa and "@" not in self.upi_vpa:
            raise SettingsError("CTVMS_UPI_VPA must look like name@bank.")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise SettingsError(f"CTVMS_TIMEZONE {self.timezone!r} is not a known zone.") from exc

    def described(self) -> list[tuple[str, str, str]]:
        """(variable, effective value with secrets masked, help) for ``ctvms config``."""
        rows = []
        for f in fields(self):
            meta: Setting = f.metadata["setting"]
            value = str(getattr(self, f.name))
            if meta.secret and value:
                value = _mask(f.name, value)
            rows.append((meta.env, value, meta.help))
        return rows


def registry() -> list[Setting]:
    """Every setting, in declaration order."""
    return [f.metadata["setting"] for f in fields(Settings)]


def _mask(name: str, value: str) -> str:
    if name == "database_url" and "@" in value:
        scheme, _, rest = value.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    if name == "database_url":
        return value
    return "********"


_BOOL = {
    "1": True,
    "on": True,
    "true": True,
    "yes": True,
    "0": False,
    "off": False,
    "false": False,
    "no": False,
    "": False,
}


def _convert(name: str, env: str, raw: str | None) -> Any:
    kind = Settings.__dataclass_fields__[name].type
    if raw is None:
        return None
    raw = raw.strip()
    if kind == "int":
        try:
            return int(raw)
        except ValueError as exc:
            raise SettingsError(f"{env} must be a whole number, not {raw!r}.") from exc
    if kind == "bool":
        if raw.lower() not in _BOOL:
            raise SettingsError(f"{env} must be on or off, not {raw!r}.")
        return _BOOL[raw.lower()]
    return raw


def _stored_secret(data_dir: Path) -> str:
    """Return the key kept in the data folder, creating it (mode 0600) on first use.

    The web server and the worker may start together on a fresh box: the key is written to a
    private file first and then linked into place, so whoever links first wins and the other
    reads a complete key, never an empty or half-written file.
    """
    path = data_dir / "secret_key"
    if path.exists():
        return _read_secret(path)
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    draft = data_dir / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(draft, path)
        except FileExistsError:
            return _read_secret(path)
    finally:
        draft.unlink(missing_ok=True)
    return key


def _read_secret(path: Path) -> str:
    key = path.read_text().strip()
    if not key:
        raise SettingsError(
            f"{path} is empty: delete it to have a new key generated, or set CTVMS_SECRET_KEY."
        )
    return key


def read_dotenv(path: Path) -> list[tuple[str, str]]:
    """Parse a ``.env`` file: ``NAME=value`` lines, ``#`` comments, optional quotes."""
    if not path.is_file():
        return []
    pairs = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        pairs.append((key.strip().removeprefix("export ").strip(), value))
    return pairs


SettingsFactory = Callable[[], Settings]
