"""Translations (gettext catalogues compiled by Babel) and locale-aware formatting.

The language of the current request or task is held in a context variable, so service functions
can raise errors whose messages are already in the reader's language. English is the source
language; ``appliance/locale/pt_BR`` holds the Brazilian Portuguese catalogue.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from contextvars import ContextVar
from decimal import Decimal
from functools import cache
from pathlib import Path

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).parent / "locale"
SUPPORTED = {"pt_BR": "Português (Brasil)", "en": "English"}
# The language of the request or task at hand; outside one (the worker's jobs, the command
# line), the process's default, which the app factory and the CLI set from CTVMS_LOCALE.
_current: ContextVar[str | None] = ContextVar("ctvms_locale", default=None)
_default = "pt_BR"


@cache
def translations(locale: str) -> NullTranslations:
    if locale == "en":
        return NullTranslations()
    return Translations.load(str(LOCALE_DIR), [locale], domain="messages")


def current_locale() -> str:
    return _current.get() or _default


def set_default_locale(locale: str) -> None:
    """The language of this process outside any request (``CTVMS_LOCALE``)."""
    global _default
    _default = locale if locale in SUPPORTED else "pt_BR"


def set_locale(locale: str) -> None:
    _current.set(locale if locale in SUPPORTED else "pt_BR")


@contextmanager
def use_locale(locale: str):
    token = _current.set(locale if locale in SUPPORTED else "pt_BR")
    try:
        yield
    finally:
        _current.reset(token)


def gettext(message: str, **params: object) -> str:
    text = translations(current_locale()).gettext(message)
    return text % params if params else text


def ngettext(singular: str, plural: str, n: int, **params: object) -> str:
    text = translations(current_locale()).ngettext(singular, plural, n)
    return text % {"num": n, **params}


_ = gettext


def pick_locale(accept_language: str | None, default: str) -> str:
    """Choose a supported locale from an Accept-Language header."""
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().replace("-", "_")
        if not tag:
            continue
        if tag.lower().startswith("pt"):
            return "pt_BR"
        if tag.lower().startswith("en"):
            return "en"
    return default


def money(minor: int, currency: str) -> str:
    """Format an amount held in minor units (cents), e.g. 12345 -> "R$ 123,45"."""
    return format_currency(
        Decimal(minor).scaleb(-2), currency, locale=_babel_locale(current_locale())
    )


def decimal_amount(minor: int) -> str:
    """An amount in minor units as a plain decimal for form fields: 12345 -> "123.45"."""
    return str(Decimal(minor).scaleb(-2).quantize(Decimal("0.01")))


def number(value: int | Decimal) -> str:
    return format_decimal(value, locale=_babel_locale(current_locale()))


def date(value: dt.date | None, fmt: str = "medium") -> str:
    if value is None:
        return ""
    return format_date(value, format=fmt, locale=_babel_locale(current_locale()))


def datetime(value: dt.datetime | None, tz: dt.tzinfo, fmt: str = "medium") -> str:
    if value is None:
        return ""
    return format_datetime(value, format=fmt, tzinfo=tz, locale=_babel_locale(current_locale()))


def month_name(month: int, width: str = "wide") -> str:
    return _babel_locale(current_locale()).months["format"][width][month]


@cache
def _babel_locale(locale: str) -> Locale:
    return Locale.parse(locale)
