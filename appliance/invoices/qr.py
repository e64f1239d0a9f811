"""QR codes for instant payments, made on the box with no internet.

Brazil (BRL): a static PIX "BR Code", an EMV Merchant-Presented-Mode payload as published by the
Banco Central do Brasil (Manual de Padrões para Iniciação do Pix): ``ID LEN VALUE`` fields and a
CRC16-CCITT-FALSE checksum. India (INR): a UPI deep link (NPCI ``upi://pay``). Both carry the
exact amount and a text (the CRF or the invoice-to-be) so the bank reference the customer types
back can be matched to the payment.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal
from urllib.parse import quote, urlencode

import segno

from appliance.settings import Settings

PIX_GUI = "br.gov.bcb.pix"
PIX_NAME_MAX = 25
PIX_CITY_MAX = 15
PIX_TXID_MAX = 25
PIX_KEY_MAX = 77  # 99 (field 26 limit) minus the GUI sub-field and two sub-field headers
UPI_TEXT_MAX = 80


def payment_qr(settings: Settings, amount_minor: int, text: str) -> dict[str, str] | None:
    """``{"payload", "svg"}`` for paying ``amount_minor`` by instant transfer, or ``None`` when
    the office's currency has no scheme here or no key is configured for it.

    ``svg`` is an inline ``<svg>`` element drawn by segno from the payload only (no text from
    the database), so a template may output it unescaped.
    """
    if amount_minor <= 0:
        raise ValueError("a payment QR code needs an amount above zero")
    currency = settings.currency.upper()
    if currency == "BRL" and settings.pix_key:
        payload = pix_payload(
            key=settings.pix_key,
            name=settings.pix_merchant_name or settings.office_name,
            city=settings.pix_merchant_city,
            amount_minor=amount_minor,
            txid=text,
        )
    elif currency == "INR" and settings.upi_vpa:
        payload = upi_link(
            vpa=settings.upi_vpa,
            name=settings.upi_payee_name or settings.office_name,
            amount_minor=amount_minor,
            text=text,
        )
    else:
        return None
    return {"payload": payload, "svg": qr_svg(payload)}


def qr_svg(payload: str) -> str:
    # Error level M at least; segno raises it further when the symbol has room to spare.
    code = segno.make(payload, error="m", micro=False)
    # A white quiet zone of its own: the code stays scannable on a dark theme.
    return code.svg_inline(
        scale=4, border=4, dark="#000", light="#fff", svgclass="payment-qr", lineclass=None
    )


# -- PIX (BRL) --------------------------------------------------------------------------------


def pix_payload(*, key: str, name: str, city: str, amount_minor: int | None, txid: str = "") -> str:
    """A static PIX BR Code for exactly ``amount_minor`` centavos (``None``: the payer types
    the amount, as in the central bank's own example)."""
    key = key.strip()
    if not key or len(key) > PIX_KEY_MAX:
        raise ValueError(f"a PIX key has 1 to {PIX_KEY_MAX} characters")
    account = _field("00", PIX_GUI) + _field("01", key)
    reference = re.sub(r"[^A-Za-z0-9]", "", _ascii(txid))[:PIX_TXID_MAX] or "***"
    body = "".join(
        (
            _field("00", "01"),
            _field("26", account),
            _field("52", "0000"),
            _field("53", "986"),
            _field("54", _decimal(amount_minor)) if amount_minor is not None else "",
            _field("58", "BR"),
            _field("59", _ascii(name)[:PIX_NAME_MAX].strip() or "N"),
            _field("60", _ascii(city)[:PIX_CITY_MAX].strip() or "BRASIL"),
            _field("62", _field("05", reference)),
        )
    )
    # The checksum covers everything before it, its own ID and length ("6304") included.
    body += "6304"
    return body + f"{crc16_ccitt(body.encode('ascii')):04X}"


def crc16_ccitt(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def parse_emv(payload: str) -> dict[str, str]:
    """Top-level ``ID -> value`` of an EMV payload (for tests and for reading codes back)."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(payload):
        tag, size = payload[pos : pos + 2], int(payload[pos + 2 : pos + 4])
        fields[tag] = payload[pos + 4 : pos + 4 + size]
        pos += 4 + size
    return fields


def _field(tag: str, value: str) -> str:
    if len(value) > 99:
        raise ValueError(f"EMV field {tag} is longer than 99 characters")
    return f"{tag}{len(value):02d}{value}"


def _ascii(text: str) -> str:
    """``"São João"`` -> ``"Sao Joao"``: the BR Code allows only printable ASCII here."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    plain = "".join(ch for ch in decomposed if ch.isascii() and ch.isprintable())
    return " ".join(plain.split())


def _decimal(amount_minor: int) -> str:
    return str(Decimal(amount_minor).scaleb(-2).quantize(Decimal("0.01")))


# -- UPI (INR) --------------------------------------------------------------------------------


def upi_link(*, vpa: str, name: str, amount_minor: int, text: str = "") -> str:
    """A UPI payment link for exactly ``amount_minor`` paise."""
    params = {
        "pa": vpa.strip(),
        "pn": " ".join(name.split()),
        "am": _decimal(amount_minor),
        "cu": "INR",
    }
    if text.strip():
        params["tn"] = " ".join(text.split())[:UPI_TEXT_MAX]
    # Spaces as %20: several UPI apps show a literal "+" otherwise.
    return "upi://pay?" + urlencode(params, quote_via=quote, safe="@")
