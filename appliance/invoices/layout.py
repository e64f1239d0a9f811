"""WeasyPrint's part of an invoice: the HTML made by ``render.render_html`` laid out as PDF.

This module imports nothing of the appliance and nothing heavy until the first render, because
it is also the program of the rendering child process (``python -m appliance.invoices.layout``,
see ``renderer.py``): a child that imports only WeasyPrint holds about 60 MB instead of the
~100 MB a copy of the server's imports would take.

The stylesheets and their fonts are parsed once per process and reused by every render.

The child's protocol, on its standard input and output: each request is a 4-byte big-endian
length and that many bytes of JSON ``{"html": ..., "layout": ...}``; each answer is one status
byte (``0`` the PDF follows, ``1`` an error message follows), a 4-byte length and the bytes.
The child ends when its input ends, so it never outlives the process that started it.
"""

from __future__ import annotations

import atexit
import json
import os
import struct
import sys
import threading
import traceback
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO

STATIC = Path(__file__).parent.parent / "web" / "static" / "invoices"
STYLESHEET = STATIC / "invoice.css"
# Rules for WeasyPrint only, read after invoice.css (see the file for why).
PDF_STYLESHEET = Path(__file__).parent / "pdf.css"
LAYOUTS = ("a4", "80mm", "58mm")
# Named @page of each receipt layout and its paper width, for cutting the PDF to its content.
_RECEIPT_PAGES = {"80mm": ("r80", 80), "58mm": ("r58", 58)}
_PX_PER_MM = 96 / 25.4

# WeasyPrint (Pango, fontconfig) is not documented as thread-safe, and a Raspberry Pi gains
# nothing from two renders at once: renders in one process take turns.
_render_lock = threading.Lock()

FRAME = struct.Struct(">I")
OK, FAILED = b"0", b"1"


def layout_or_default(layout: str | None) -> str:
    return layout if layout in LAYOUTS else "a4"


@cache
def _stylesheets() -> tuple[Any, tuple[Any, ...]]:
    """The font configuration and the parsed stylesheets, made on the first render.

    Parsing invoice.css and loading its @font-face fonts was about a third of a warm render;
    WeasyPrint's FontConfiguration is meant to be shared by the stylesheets and documents that
    use it (it also keeps Pango's font features and line struts cached between renders)."""
    from weasyprint import CSS
    from weasyprint.text.fonts import FontConfiguration

    fonts = FontConfiguration()
    # Forgotten at exit while the interpreter is whole, so WeasyPrint can remove the fonts'
    # temporary folder (its clean-up fails when it runs during the interpreter's shutdown).
    atexit.register(_stylesheets.cache_clear)
    sheets = (
        CSS(filename=str(STYLESHEET), font_config=fonts),
        CSS(filename=str(PDF_STYLESHEET), font_config=fonts),
    )
    return fonts, sheets


def layout_pdf(html: str, layout: str) -> bytes:
    """The document made by ``render.render_html`` (with ``screen=False``) laid out in
    ``layout`` and written as PDF bytes."""
    from weasyprint import CSS, HTML

    layout = layout_or_default(layout)
    with _render_lock:
        fonts, sheets = _stylesheets()

        def lay_out(extra: list[Any]) -> Any:
            return HTML(string=html, base_url=str(STATIC)).render(
                stylesheets=[*sheets, *extra], font_config=fonts
            )

        extra: list[Any] = []
        if layout in _RECEIPT_PAGES:
            # Roll paper: lay out once on a very long page, then again cut to the content, so
            # the printer feeds no blank paper and a long receipt is never split.
            page_name, width = _RECEIPT_PAGES[layout]
            probe = lay_out([CSS(string=f"@page {page_name} {{ size: {width}mm 3000mm }}")])
            height = _content_height_mm(probe)
            extra = [CSS(string=f"@page {page_name} {{ size: {width}mm {height:.1f}mm }}")]
        return lay_out(extra).write_pdf()


def _content_height_mm(document: Any) -> float:
    page = document.pages[0]._page_box
    root = page.children[0]
    bottom = root.position_y + root.margin_height() + page.margin_bottom
    return max(bottom / _PX_PER_MM + 1, 30.0)


# -- the child process ----------------------------------------------------------------------


def read_frame(stream: BinaryIO) -> bytes | None:
    """One length-prefixed frame, or None at the end of the stream."""
    head = stream.read(FRAME.size)
    if len(head) < FRAME.size:
        return None
    (size,) = FRAME.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        return None
    return body


def write_frame(stream: BinaryIO, status: bytes, body: bytes) -> None:
    stream.write(status + FRAME.pack(len(body)) + body)
    stream.flush()


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """Answer requests until the input ends or the parent stops reading. A render that fails
    answers with its error and the child goes on; only the parent decides when it ends."""
    _stylesheets()  # WeasyPrint, the stylesheets and their fonts, before the first request
    while (frame := read_frame(requests)) is not None:
        try:
            request = json.loads(frame)
            data = layout_pdf(request["html"], request["layout"])
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            status, data = FAILED, f"{type(exc).__name__}: {exc}".encode()
        else:
            status = OK
        try:
            write_frame(answers, status, data)
        except (BrokenPipeError, ConnectionResetError):
            return  # the parent is gone (killed mid-render, say): nobody to answer


def main() -> None:
    # The answers keep the real standard output; anything printed goes to standard error, so
    # a stray print (a library's, say) cannot break a frame.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
