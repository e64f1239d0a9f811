"""Payment QR payloads checked against the published formats (BCB BR Code, NPCI UPI link)."""

from __future__ import annotations

import binascii
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest

from appliance.invoices import qr
from appliance.settings import Settings, SettingsError

# The static BR Code printed in the Banco Central do Brasil's "Manual de Padrões para Iniciação
# do Pix" (random key, no amount, no txid), with its published CRC.
BCB_EXAMPLE = (
    "00020126580014br.gov.bcb.pix0136123e4567-e12b-12d1-a456-426655440000"
    "5204000053039865802BR5913Fulano de Tal6008BRASILIA62070503***63041D3D"
)


def reference_crc(payload_without_crc: str) -> str:
    # binascii.crc_hqx is CRC-CCITT (poly 0x1021, MSB first); with 0xFFFF as the start value it
    # is the CRC16-CCITT-FALSE the BR Code uses: an independent implementation to compare with.
    return f"{binascii.crc_hqx(payload_without_crc.encode('ascii'), 0xFFFF):04X}"


def sub_fields(value: str) -> dict[str, str]:
    return qr.parse_emv(value)


def brl(tmp_path, **overrides) -> Settings:
    values = dict(
        data_dir=tmp_path,
        secret_key="k" * 40,
        currency="BRL",
        office_name="Test Office",
        pix_key="123e4567-e12b-12d1-a456-426655440000",
        pix_merchant_city="BRASILIA",
    )
    values.update(overrides)
    return Settings.from_env({}, **values)


def test_crc_matches_the_standard_check_value():
    assert qr.crc16_ccitt(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value


def test_central_bank_example_is_reproduced_exactly():
    payload = qr.pix_payload(
        key="123e4567-e12b-12d1-a456-426655440000",
        name="Fulano de Tal",
        city="BRASILIA",
        amount_minor=None,
    )
    assert payload == BCB_EXAMPLE
    assert reference_crc(BCB_EXAMPLE[:-4]) == "1D3D"


def test_pix_payload_carries_amount_key_and_txid_with_a_valid_crc(tmp_path):
    result = qr.payment_qr(brl(tmp_path), 12345, "TS000042")
    payload = result["payload"]
    fields = qr.parse_emv(payload)
    assert list(fields) == ["00", "26", "52", "53", "54", "58", "59", "60", "62", "63"]
    assert fields["00"] == "01"
    assert sub_fields(fields["26"]) == {
        "00": "br.gov.bcb.pix",
        "01": "123e4567-e12b-12d1-a456-426655440000",
    }
    assert (fields["52"], fields["53"], fields["54"], fields["58"]) == (
        "0000",
        "986",
        "123.45",
        "BR",
    )
    assert fields["59"] == "Test Office"
    assert sub_fields(fields["62"]) == {"05": "TS000042"}
    # The CRC covers the whole payload up to and including "6304".
    assert payload[-8:-4] == "6304"
    assert fields["63"] == reference_crc(payload[:-4])
    assert fields["63"] == fields["63"].upper() and len(fields["63"]) == 4


@pytest.mark.parametrize(
    ("amount", "text"), [(1, "0.01"), (100, "1.00"), (25000, "250.00"), (99999999, "999999.99")]
)
def test_pix_amount_has_two_decimals(tmp_path, amount, text):
    payload = qr.payment_qr(brl(tmp_path), amount, "X")["payload"]
    assert qr.parse_emv(payload)["54"] == text


def test_pix_name_city_and_txid_are_ascii_and_truncated(tmp_path):
    settings = brl(
        tmp_path,
        pix_merchant_name="Televisão a Cabo São João do Piauí Ltda",
        pix_merchant_city="São José dos Campos",
    )
    payload = qr.payment_qr(settings, 5000, "Fatura MM-2026-000042 (março)")["payload"]
    assert payload.isascii()
    fields = qr.parse_emv(payload)
    assert fields["59"] == "Televisao a Cabo Sao Joao"  # 25 characters, accents removed
    assert len(fields["59"]) == 25
    assert fields["60"] == "Sao Jose dos Ca"
    assert len(fields["60"]) == 15
    txid = sub_fields(fields["62"])["05"]
    assert txid == "FaturaMM2026000042marco"
    assert txid.isalnum() and len(txid) <= 25
    assert fields["63"] == reference_crc(payload[:-4])


def test_pix_txid_is_cut_at_25_and_empty_becomes_stars(tmp_path):
    long = qr.payment_qr(brl(tmp_path), 100, "A" * 40)["payload"]
    assert sub_fields(qr.parse_emv(long)["62"])["05"] == "A" * 25
    empty = qr.payment_qr(brl(tmp_path), 100, "---")["payload"]
    assert sub_fields(qr.parse_emv(empty)["62"])["05"] == "***"


def test_pix_merchant_name_defaults_to_the_office_name(tmp_path):
    payload = qr.payment_qr(brl(tmp_path, office_name="Rede Ipê"), 100, "X")["payload"]
    assert qr.parse_emv(payload)["59"] == "Rede Ipe"


def test_svg_is_inline_and_has_no_script(tmp_path):
    svg = qr.payment_qr(brl(tmp_path), 100, "X")["svg"]
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<script" not in svg and "style=" not in svg


def test_upi_link_is_url_encoded(tmp_path):
    settings = Settings.from_env(
        {},
        data_dir=tmp_path,
        secret_key="k" * 40,
        currency="INR",
        office_name="Shree Cable & Net",
        upi_vpa="shreecable@okbank",
    )
    result = qr.payment_qr(settings, 45050, "CRF MM000042")
    link = result["payload"]
    assert link.startswith("upi://pay?pa=shreecable@okbank&")
    assert "+" not in link and " " not in link and "%20" in link
    query = parse_qs(urlsplit(link).query)
    assert query == {
        "pa": ["shreecable@okbank"],
        "pn": ["Shree Cable & Net"],
        "am": ["450.50"],
        "cu": ["INR"],
        "tn": ["CRF MM000042"],
    }
    assert "<svg" in result["svg"]


def test_no_qr_without_a_key_or_for_other_currencies(tmp_path):
    assert qr.payment_qr(brl(tmp_path, pix_key="", pix_merchant_city=""), 100, "X") is None
    assert qr.payment_qr(replace(brl(tmp_path), currency="EUR"), 100, "X") is None
    inr_without_vpa = replace(brl(tmp_path), currency="INR")
    assert qr.payment_qr(inr_without_vpa, 100, "X") is None


def test_zero_amount_is_refused(tmp_path):
    with pytest.raises(ValueError):
        qr.payment_qr(brl(tmp_path), 0, "X")


def test_settings_refuse_a_pix_key_without_city(tmp_path):
    with pytest.raises(SettingsError, match="CTVMS_PIX_MERCHANT_CITY"):
        brl(tmp_path, pix_merchant_city="")
    with pytest.raises(SettingsError, match="CTVMS_UPI_VPA"):
        Settings.from_env({}, data_dir=tmp_path, secret_key="k" * 40, upi_vpa="nobank")


def test_payment_qr_partial_shows_the_code_and_the_copyable_payload(app, tmp_path):
    from bs4 import BeautifulSoup

    from appliance.i18n import use_locale

    result = qr.payment_qr(brl(tmp_path), 12345, "TS000042")
    template = app.template_engine.get_template("invoices/_payment_qr.html")
    with use_locale("en"):
        page = BeautifulSoup(template.render(qr=result, amount=12345), "html.parser")
    assert page.find("svg", class_="payment-qr") is not None
    assert page.find("textarea").get_text() == result["payload"]
    assert "R$123.45" in page.get_text()
    assert template.render(qr=None, amount=12345).strip() == ""
