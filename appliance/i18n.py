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
from babel.numbers import (
    NumberPattern,
    format_currency,
    format_decimal,
    get_currency_precision,
    get_currency_symbol,
)
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
    return _money_format(current_locale(), currency)(minor)


def _grouped(digits: str, grouping: tuple[int, int], separator: str) -> str:
    """Digits with the group separator as Babel places it: the last group of ``grouping[0]``,
    the others of ``grouping[1]``."""
    size = grouping[0]
    if len(digits) <= size:
        return digits
    groups = []
    while len(digits) > size:
        groups.append(digits[-size:])
        digits = digits[:-size]
        size = grouping[1]
    groups.append(digits)
    return separator.join(reversed(groups))


def _plain(pattern: NumberPattern, *texts: str) -> bool:
    """True when ``pattern`` is prefix, grouped digits, fraction, suffix and nothing more: no
    scaling, exponent, significant digits, quoted text or long currency names."""
    return (
        pattern.int_prec[0] <= 1
        and not pattern.exp_prec
        and pattern.scale == 0
        and "@" not in pattern.pattern
        and min(pattern.grouping) > 0
        and not any(
            "'" in text or "¤¤" in text for text in (*pattern.prefix, *pattern.suffix, *texts)
        )
    )


class _MoneyFormat:
    """Babel's standard currency format for one locale and currency, prepared once.

    ``babel.numbers.format_currency`` looks up the pattern, the currency's symbol and precision
    and the locale's separators on every call (~25 us; a dashboard formats a hundred amounts).
    For the usual pattern (a prefix and suffix around grouped digits, two decimals) the pieces
    are taken from Babel once and joined with plain string operations, giving the same text.
    Any other pattern (no decimals, like JPY; quoted text; a currency name) goes through the
    Babel pattern each time, so the output is always Babel's.
    """

    __slots__ = ("affixes", "babel_locale", "currency", "decimal", "fast", "group", "grouping")

    def __init__(self, locale: str, currency: str) -> None:
        self.babel_locale = _babel_locale(locale)
        self.currency = currency
        pattern = self.babel_locale.currency_formats["standard"]
        symbols = self.babel_locale.number_symbols["latn"]
        self.group = symbols["group"]
        self.decimal = symbols["decimal"]
        self.grouping = pattern.grouping
        symbol = get_currency_symbol(currency, self.babel_locale)
        # (positive prefix, suffix), (negative prefix, suffix), with the sign written as Babel
        # writes it (the pattern's own "-", not the locale's minus sign).
        self.affixes = tuple(
            (prefix.replace("¤", symbol), suffix.replace("¤", symbol))
            for prefix, suffix in zip(pattern.prefix, pattern.suffix, strict=True)
        )
        self.fast = get_currency_precision(currency) == 2 and _plain(
            pattern, self.group, self.decimal, symbol
        )

    def __call__(self, minor: int) -> str:
        if not self.fast or not isinstance(minor, int):
            return format_currency(
                Decimal(minor).scaleb(-2), self.currency, locale=self.babel_locale
            )
        whole, cents = divmod(-minor if minor < 0 else minor, 100)
        prefix, suffix = self.affixes[minor < 0]
        digits = _grouped(str(whole), self.grouping, self.group)
        return f"{prefix}{digits}{self.decimal}{cents:02d}{suffix}"


@cache
def _money_format(locale: str, currency: str) -> _MoneyFormat:
    return _MoneyFormat(locale, currency)


class _IntegerFormat:
    """Babel's decimal format for whole numbers of one locale, prepared once (see
    :class:`_MoneyFormat`); anything but a plain int goes through Babel."""

    __slots__ = ("affixes", "babel_locale", "fast", "group", "grouping")

    def __init__(self, locale: str) -> None:
        self.babel_locale = _babel_locale(locale)
        pattern = self.babel_locale.decimal_formats[None]
        self.group = self.babel_locale.number_symbols["latn"]["group"]
        self.grouping = pattern.grouping
        self.affixes = tuple(zip(pattern.prefix, pattern.suffix, strict=True))
        # No minimum fraction digits: Babel writes a whole number without a decimal part.
        self.fast = pattern.frac_prec[0] == 0 and _plain(pattern, self.group)

    def __call__(self, value: int | Decimal) -> str:
        if not self.fast or type(value) is not int:
            return format_decimal(value, locale=self.babel_locale)
        prefix, suffix = self.affixes[value < 0]
        return f"{prefix}{_grouped(str(abs(value)), self.grouping, self.group)}{suffix}"


@cache
def _integer_format(locale: str) -> _IntegerFormat:
    return _IntegerFormat(locale)


def decimal_amount(minor: int) -> str:
    """An amount in minor units as a plain decimal for form fields: 12345 -> "123.45"."""
    return str(Decimal(minor).scaleb(-2).quantize(Decimal("0.01")))


def number(value: int | Decimal) -> str:
    return _integer_format(current_locale())(value)


def date(value: dt.date | None, fmt: str = "medium") -> str:
    if value is None:
        return ""
    return format_date(value, format=fmt, locale=_babel_locale(current_locale()))


def datetime(value: dt.datetime | None, tz: dt.tzinfo, fmt: str = "medium") -> str:
    if value is None:
        return ""
    return format_datetime(value, format=fmt, tzinfo=tz, locale=_babel_locale(current_locale()))


def month_name(month: int, width: str = "wide") -> str:
    return _month_names(current_locale(), width)[month]


@cache
def _month_names(locale: str, width: str) -> dict[int, str]:
    # Each step into Babel's locale data wraps a dictionary; a dashboard asks for ~30 names.
    return dict(_babel_locale(locale).months["format"][width])


@cache
def _babel_locale(locale: str) -> Locale:
    return Locale.parse(locale)
