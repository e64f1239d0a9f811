"""Parsing amounts typed by people into integer minor units."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from appliance.i18n import gettext as _


class AmountError(ValueError):
    pass


def parse_amount(text: str | int | None) -> int:
    """``"123,45"`` or ``"123.45"`` -> 12345. Refuses negatives, more than two decimals, junk."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text * 100
    raw = (text or "").strip().replace(" ", "")
    if not raw:
        raise AmountError(_("Enter an amount."))
    if "," in raw and "." in raw:
        # "1.234,56" (pt-BR) or "1,234.56" (en): the last separator is the decimal one.
        thousands = "." if raw.rfind(",") > raw.rfind(".") else ","
        raw = raw.replace(thousands, "")
    raw = raw.replace(",", ".")
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:
        raise AmountError(_("Enter a number, like 120.50.")) from exc
    if not value.is_finite():
        raise AmountError(_("Enter a number, like 120.50."))
    if value.as_tuple().exponent < -2:  # type: ignore[operator]
        raise AmountError(_("Use at most two decimal places."))
    if value <= 0:
        raise AmountError(_("The amount must be more than zero."))
    if value >= Decimal(10) ** 9:
        raise AmountError(_("This amount is too large."))
    return int(value.scaleb(2))
