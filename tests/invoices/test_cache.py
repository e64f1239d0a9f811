"""The PDF cache: one intact file per invoice, layout and language, rendered again when missing
or damaged, written atomically, and never addressed by anything but a valid number."""

from __future__ import annotations

import asyncio

import pytest

from appliance.errors import NotFound
from appliance.invoices import service as invoices
from tests.conftest import make_settings
from tests.invoices.builders import make_view
from tests.invoices.test_render import pdf_text


@pytest.fixture
def office(tmp_path):
    return make_settings(tmp_path)


def ensure(office, view=None, **kwargs):
    view = view or make_view()
    return asyncio.run(invoices.ensure_pdf(office, view["number"], view=view, **kwargs))


def test_first_call_renders_then_the_cache_is_served(office):
    path = ensure(office, locale="en")
    assert path == office.invoices_dir / "TS-2026-000042.a4.en.pdf"
    assert invoices.is_intact(path)
    before = path.stat()
    assert ensure(office, locale="en") == path
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    # Nothing but the PDF is left in the folder (no temporary files).
    assert [p.name for p in office.invoices_dir.iterdir()] == [path.name]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: p.unlink(), id="missing"),
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), id="cut"),
        pytest.param(lambda p: p.write_bytes(b"\0" * 20000), id="garbage"),
        pytest.param(lambda p: p.write_bytes(b""), id="empty"),
        pytest.param(lambda p: p.write_bytes(b"%PDF-1.7\n%%EOF\n"), id="tiny"),
    ],
)
def test_missing_or_damaged_pdf_is_rendered_again(office, damage):
    path = ensure(office, locale="en")
    damage(path)
    assert not invoices.is_intact(path)
    assert ensure(office, locale="en") == path
    assert invoices.is_intact(path)
    _, text = pdf_text(path.read_bytes())
    assert "TS-2026-000042" in text and "R$200.10" in text


def test_reversal_is_never_hidden_by_an_older_cached_copy(office):
    plain = ensure(office, locale="en")
    reversed_path = ensure(office, make_view(reversed=True, reversal_reason="Typo"), locale="en")
    assert reversed_path != plain
    _, text = pdf_text(reversed_path.read_bytes())
    assert "REVERSED" in text and "Typo" in text


def test_each_layout_and_language_has_its_own_file(office):
    receipt = ensure(office, layout="58mm", locale="pt_BR")
    assert receipt.name == "TS-2026-000042.58mm.pt_BR.pdf"
    _, text = pdf_text(receipt.read_bytes())
    assert "R$ 200,10" in text


def test_unknown_language_and_layout_fall_back_to_the_office_defaults(office):
    path = ensure(office, layout="letter", locale="xx")
    assert path.name == f"TS-2026-000042.a4.{office.locale}.pdf"


@pytest.mark.parametrize(
    "number",
    ["../../etc/passwd", "TS-2026-000042/../../x", "TS-2026-00004", "", "TS-2026-000042.pdf\0"],
)
def test_only_valid_numbers_become_file_names(office, number):
    with pytest.raises(NotFound):
        invoices.pdf_path(office, number, "a4", "en")
    with pytest.raises(NotFound):
        asyncio.run(invoices.ensure_pdf(office, number, view=make_view()))


def test_write_failure_raises_and_leaves_no_file(office):
    office.data_dir.mkdir(parents=True, exist_ok=True)
    office.invoices_dir.write_text("not a folder")  # the folder cannot be created
    with pytest.raises(OSError):
        ensure(office, locale="en")
