"""Locale-aware formatting: amounts read exactly as Babel writes them."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from babel import Locale
from babel.numbers import format_currency, format_decimal

from appliance import i18n

AMOUNTS = [
    0,
    1,
    -1,
    9,
    10,
    99,
    100,
    -100,
    101,
    999,
    1_000,
    99_999,
    100_000,
    -100_000,
    123_456,
    100_000_000,
    -123_456_789,
    10**15 + 7,
    -(10**15),
    *random.Random(7).sample(range(-(10**11), 10**11), 300),
]


def babel_money(minor: int, currency: str, locale: str) -> str:
    return format_currency(Decimal(minor).scaleb(-2), currency, locale=locale)


@pytest.mark.parametrize("locale", ["en", "pt_BR"])
@pytest.mark.parametrize("currency", ["BRL", "USD", "EUR", "INR", "GBP"])
def test_money_is_babels_text_for_every_amount(locale, currency):
    with i18n.use_locale(locale):
        assert [i18n.money(a, currency) for a in AMOUNTS] == [
            babel_money(a, currency, locale) for a in AMOUNTS
        ]


@pytest.mark.parametrize("currency", ["JPY", "KWD"])
def test_money_of_a_currency_without_two_decimals_is_babels_rounding(currency):
    # Babel rounds to the currency's own digits (0 for JPY, 3 for KWD): the general path.
    with i18n.use_locale("pt_BR"):
        assert [i18n.money(a, currency) for a in AMOUNTS] == [
            babel_money(a, currency, "pt_BR") for a in AMOUNTS
        ]


def test_money_reads_as_each_locale_writes_it():
    with i18n.use_locale("pt_BR"):
        assert i18n.money(123_456_789, "BRL") == "R$\xa01.234.567,89"
        assert i18n.money(-5, "BRL") == "-R$\xa00,05"
        assert i18n.money(0, "BRL") == "R$\xa00,00"
    with i18n.use_locale("en"):
        assert i18n.money(123_456_789, "BRL") == "R$1,234,567.89"
        assert i18n.money(-5, "USD") == "-$0.05"


def test_money_follows_the_current_locale_after_a_switch():
    with i18n.use_locale("en"):
        first = i18n.money(150_000, "BRL")
    with i18n.use_locale("pt_BR"):
        second = i18n.money(150_000, "BRL")
    assert (first, second) == ("R$1,500.00", "R$\xa01.500,00")


@pytest.mark.parametrize("locale", ["en", "pt_BR"])
def test_number_is_babels_text_for_whole_numbers_and_decimals(locale):
    values = [*AMOUNTS, Decimal("1234.5"), Decimal("-0.125"), Decimal("1000000.000")]
    with i18n.use_locale(locale):
        assert [i18n.number(v) for v in values] == [
            format_decimal(v, locale=locale) for v in values
        ]
    with i18n.use_locale("pt_BR"):
        assert i18n.number(1_234_567) == "1.234.567"


@pytest.mark.parametrize("locale", ["en", "pt_BR"])
@pytest.mark.parametrize("width", ["wide", "abbreviated"])
def test_month_names_are_babels(locale, width):
    names = Locale.parse(locale).months["format"][width]
    with i18n.use_locale(locale):
        assert [i18n.month_name(m, width) for m in range(1, 13)] == [names[m] for m in range(1, 13)]
