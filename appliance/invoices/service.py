"""Who may see an invoice, and the PDF cache in the data folder.

The invoice itself (numbers, rows, amounts) belongs to billing: :func:`load_view` asks
``appliance.billing.service.invoice_view``. This module decides who may see it and keeps one PDF
per invoice number, layout and language in ``settings.invoices_dir``, rendered again whenever
the file is missing or damaged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from appliance import i18n
from appliance.errors import NotFound
from appliance.i18n import gettext as _
from appliance.invoices import render, renderer
from appliance.settings import Settings

log = logging.getLogger(__name__)

# Office code (2-6 capitals or digits, see settings), year, serial. Only a number matching this
# ever becomes part of a file name, so a request cannot reach outside the invoices folder.
NUMBER = re.compile(r"[A-Z0-9]{2,6}-[0-9]{4}-[0-9]{6,9}")
STAFF_ROLES = frozenset({"owner", "admin", "agent"})
MIN_PDF_BYTES = 1024


def _not_found() -> NotFound:
    return NotFound(_("There is no such invoice."))


def checked_number(number: str) -> str:
    number = (number or "").strip().upper()
    if not NUMBER.fullmatch(number):
        raise _not_found()
    return number


async def load_view(number: str) -> dict[str, Any]:
    """The invoice as billing records it; ``NotFound`` for a malformed or unknown number."""
    from appliance.billing.service import invoice_view

    return await invoice_view(checked_number(number))


async def visible_invoice(user: Any, number: str) -> dict[str, Any]:
    """The invoice if ``user`` may see it. Staff see every invoice; a customer only their own,
    and someone else's answers exactly like a missing one, so numbers cannot be probed."""
    view = await load_view(number)
    role = getattr(user, "role", None)
    if role in STAFF_ROLES:
        return view
    if role == "customer" and str(view["customer_id"]) == str(user.customer_id):
        return view
    raise _not_found()


# -- the PDF cache ----------------------------------------------------------------------------


def pdf_path(
    settings: Settings, number: str, layout: str, locale: str, *, reversed_: bool = False
) -> Path:
    """Where the PDF of one invoice, layout and language lives. A reversed payment gets a file
    of its own, so a copy cached before the reversal is never served without its banner."""
    number = checked_number(number)
    layout = render.layout_or_default(layout)
    locale = locale if locale in i18n.SUPPORTED else settings.locale
    suffix = ".reversed" if reversed_ else ""
    return settings.invoices_dir / f"{number}.{layout}.{locale}{suffix}.pdf"


def is_intact(path: Path) -> bool:
    """A complete PDF: big enough, ``%PDF-`` at the start and ``%%EOF`` at the end."""
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < MIN_PDF_BYTES or fh.read(5) != b"%PDF-":
                return False
            fh.seek(-32, os.SEEK_END)
            return b"%%EOF" in fh.read()
    except OSError:
        return False


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it over: a reader sees the old
    file or the whole new one, never half a PDF, even with the worker writing at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pdf")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


async def ensure_pdf(
    settings: Settings,
    number: str,
    layout: str = "a4",
    *,
    locale: str | None = None,
    view: dict[str, Any] | None = None,
) -> Path:
    """The cached PDF of invoice ``number``, rendered again from the database if the file is
    missing or damaged. ``view`` saves a query when the caller has just loaded the invoice.

    The HTML is made here and laid out in the renderer's child process (``renderer.py``).
    Raises ``NotFound`` for an unknown invoice; anything else means rendering or writing
    failed (the caller shows a friendly page or retries later).
    """
    number = checked_number(number)
    layout = render.layout_or_default(layout)
    locale = locale if locale in i18n.SUPPORTED else settings.locale
    if view is None:
        view = await load_view(number)
    path = pdf_path(settings, number, layout, locale, reversed_=bool(view.get("reversed")))
    if is_intact(path):
        return path
    if path.exists():
        log.warning("cached invoice PDF damaged; rendering again", extra={"number": number})

    def make() -> bytes:  # in a thread: Jinja2 here, then the wait for the child's layout
        html = render.render_html(view, settings, layout=layout, locale=locale, screen=False)
        return renderer.renderer().render_now(html, layout)

    data = await asyncio.to_thread(make)
    await asyncio.to_thread(write_atomically, path, data)
    log.info(
        "invoice PDF rendered",
        extra={"number": number, "layout": layout, "locale": locale, "bytes": len(data)},
    )
    return path
