"""The PDF writer: a long report set in fixed-width columns, rendered in chunks of pages.

WeasyPrint lays an HTML table out at 10-14 ms per row (every cell is a box with its own styles
and its own Pango layout), and keeps a whole document in memory until it is written: a
20,000-row table would take minutes and gigabytes. So the table is set here, in Python, in a
monospaced font: each row becomes a few lines of text with its columns padded to fixed widths
(long values wrapped inside their column, amounts right-aligned), and WeasyPrint draws one
block of preformatted text per row, 1.5-2.5 ms of CPU a row. As every line has the same height,
this module also decides where pages end: each page carries the column headings, a row never
straddles two pages, and a chunk of :data:`CHUNK_PAGES` pages is one HTML document, rendered to
a temporary PDF, optionally in worker processes so that every core of the box works. Memory is
one chunk per worker, plus, while the chunks are joined, the output document: pypdf holds the
whole file it writes (about 0.1 MB per page here, 120 MB for 663 pages), so this part still
grows with the report; writing the joined file object by object would remove it.

"Page X of Y" cannot be known while chunks are rendered one by one, so it is added at the end:
small stamp pages carrying only the page label are rendered by WeasyPrint (same font), and
pypdf lays each over its page while joining the chunks into the final file.

Known limit: widths are counted in characters, so a character the monospaced font lacks (CJK,
emoji) is drawn from another font at another width and shifts the rest of its line a little.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import logging
import multiprocessing
import re
import shutil
import tempfile
import textwrap
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from appliance import i18n
from appliance.i18n import gettext as _
from appliance.plans.service import service_label
from appliance.reports.columns import (
    Column,
    Heading,
    Totals,
    mode_label,
    opening_label,
    status_label,
)

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
TEMPLATES = HERE.parent / "web" / "templates"
CHUNK_PAGES = 10  # pages per WeasyPrint document (~450 rows)
STAMP_PAGES = 200  # stamp pages rendered per WeasyPrint document

# Geometry, in points, of A4 landscape with the margins of pdf.css (10 mm top, 13 mm bottom,
# 9 mm either side). The table's font is DejaVu Sans Mono, whose every glyph is 1233/2048 em.
MM = 72 / 25.4
FONT_PT = 6.5
LINE_PT = 8.0
ADVANCE_EM = 1233 / 2048
CONTENT_WIDTH_PT = (297 - 18) * MM
CONTENT_HEIGHT_PT = (210 - 23) * MM - 2  # 2 pt kept free against rounding
HEADER_PT = 8 * LINE_PT  # office, title, filters (room for two lines) and date, first page
HEADINGS_PAD_PT = 2.5  # below the column headings: padding and the rule
TOTALS_GAP_PT = 2 * LINE_PT
CHARS = int(CONTENT_WIDTH_PT / (FONT_PT * ADVANCE_EM))  # characters in one line
GAP = 1  # blank characters between two columns (two after an amount)
# Columns listing one entry per payment, whose lines are kept level with each other.
PAYMENT_KEYS = ("paid_on", "invoices", "modes")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@functools.cache
def _css() -> str:
    metrics = (
        f".table {{ font-size: {FONT_PT}pt; line-height: {LINE_PT}pt; }}\n"
        f"header {{ height: {HEADER_PT}pt; }}\n"
        f".totals {{ margin-top: {TOTALS_GAP_PT - LINE_PT}pt; }}\n"
    )
    return (HERE / "pdf.css").read_text() + metrics


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        lambda message, **kw: i18n.gettext(message, **kw),
        lambda singular, plural, n, **kw: i18n.ngettext(singular, plural, n, **kw),
        newstyle=True,
    )
    return env


def css_string(text: str) -> str:
    """``text`` as a quoted CSS string that cannot close the string or the <style> element."""
    out = []
    for ch in text:
        if ch in '\\"<>&' or ord(ch) < 32:
            out.append(f"\\{ord(ch):x} ")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def render_chunk(html: str) -> tuple[bytes, int]:
    """One chunk's HTML -> (PDF bytes, page count). Runs in a worker process or inline."""
    from weasyprint import HTML
    from weasyprint.text.fonts import FontConfiguration

    document = HTML(string=html, base_url=str(HERE)).render(font_config=FontConfiguration())
    return document.write_pdf(), len(document.pages)


def _warm_up() -> None:
    # Load WeasyPrint, Pango and the fonts once per worker, not on its first chunk.
    render_chunk("<p>.</p>")


# -- the fixed-width table -----------------------------------------------------------------


def clean_text(text: str) -> str:
    """One printable line: composed accents (one character each), no control characters."""
    if text.isascii() and text.isprintable():
        return text
    return _CONTROL.sub(" ", unicodedata.normalize("NFC", text))


def wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` characters, at spaces where it can."""
    if len(text) <= width:
        return [text]
    return textwrap.wrap(text, width, break_on_hyphens=False) or [""]


class Grid:
    """Column widths in characters, and a row's cells set as lines of that many characters."""

    def __init__(self, columns: list[Column], *, chars: int = CHARS) -> None:
        self.right = [c.kind in ("money", "count") for c in columns]
        self.payments = [c.key in PAYMENT_KEYS for c in columns]
        # One blank between columns, two where an amount ends and a text column begins.
        self.gaps = [
            GAP + (self.right[i] and not self.right[i + 1]) for i in range(len(columns) - 1)
        ] + [0]
        spare = chars - sum(c.pdf_chars for c in columns) - sum(self.gaps)
        shares = sum(c.pdf_share for c in columns) or 1
        self.widths = [c.pdf_chars + int(max(0, spare) * c.pdf_share / shares) for c in columns]

        self._line = "".join(
            f"{{:{'>' if right else '<'}{width}}}" + " " * gap
            for right, width, gap in zip(self.right, self.widths, self.gaps, strict=True)
        ).format

    def lines(self, cells: list[list[str]]) -> list[str]:
        """The printed lines of one row: ``cells`` holds each column's entries (see
        :meth:`PdfReport._cells`); the i-th entries of the payment columns start level."""
        columns: list[list[str]] = []
        height = 1
        for items, width in zip(cells, self.widths, strict=True):
            if len(items) == 1 and len(items[0]) <= width:
                lines = [clean_text(items[0])]
            else:
                lines = [line for item in items for line in wrap(clean_text(item), width)]
                height = max(height, len(lines))
            columns.append(lines)
        if height == 1:
            return [self._line(*(c[0] if c else "" for c in columns)).rstrip()]
        if any(len(items) > 1 for items, pay in zip(cells, self.payments, strict=True) if pay):
            self._level_payments(cells, columns)
            height = max(len(c) for c in columns)
        return [
            self._line(*(c[n] if n < len(c) else "" for c in columns)).rstrip()
            for n in range(height)
        ]

    def _level_payments(self, cells: list[list[str]], columns: list[list[str]]) -> None:
        pay = [i for i, p in enumerate(self.payments) if p]
        wrapped = {i: [wrap(clean_text(item), self.widths[i]) for item in cells[i]] for i in pay}
        count = max(len(w) for w in wrapped.values())
        for i in pay:
            columns[i] = []
        for n in range(count):
            height = max(len(wrapped[i][n]) if n < len(wrapped[i]) else 0 for i in pay)
            for i in pay:
                lines = wrapped[i][n] if n < len(wrapped[i]) else []
                columns[i] += lines + [""] * (height - len(lines))


@dataclass
class _Page:
    first: bool
    rows: list[tuple[str, bool]] = field(default_factory=list)  # (text, shaded)
    used: float = 0.0


class PdfReport:
    """Write a report row by row: ``add(rows)`` any number of times, then ``close()``.

    ``workers`` > 0 renders chunks in that many processes (for large reports); 0 renders in the
    calling thread.
    """

    def __init__(
        self,
        path: Path,
        *,
        heading: Heading,
        columns: list[Column],
        currency: str,
        workers: int = 0,
        chunk_pages: int = CHUNK_PAGES,
    ) -> None:
        self.path = path
        self.heading = heading
        self.columns = columns
        self.currency = currency
        self.chunk_pages = chunk_pages
        self.totals = Totals()
        self.rows_done = 0
        self.grid = Grid(columns)
        self._formatters_list = self._formatters()
        self._headings = "\n".join(self.grid.lines([[c.label] for c in columns]))
        self._headings_pt = self._headings.count("\n") * LINE_PT + LINE_PT + HEADINGS_PAD_PT
        self._pages: list[_Page] = []
        self._page = self._new_page(first=True)
        self._chunk_rows = 0
        self._chunks = 0
        self._parts: list[tuple[Path, int]] = []
        self._pending: collections.deque[tuple[Any, int]] = collections.deque()
        self._tmp = Path(tempfile.mkdtemp(prefix=".pdf-", dir=path.parent))
        self._lang = "pt-BR" if i18n.current_locale() == "pt_BR" else "en"
        self._locale = i18n.current_locale()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._max_pending = 0
        if workers > 0:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_warm_up,
            )
            self._max_pending = workers * 2

    # -- rows -----------------------------------------------------------------------------

    def _formatters(self) -> list[Any]:
        """Per column, a function from a row to that column's entries; labels, dates and
        amounts formatted once per distinct value."""
        currency = self.currency
        opening = [opening_label()]
        day = functools.lru_cache(maxsize=1024)(lambda when: i18n.date(when, "short"))
        amount = functools.lru_cache(maxsize=1024)(lambda minor: i18n.money(minor, currency))
        label = functools.lru_cache(maxsize=64)(mode_label)

        def text(column: Column) -> Any:
            if column.key == "status":
                status = functools.lru_cache(maxsize=64)(status_label)
                return lambda row: [status(row["status"])]
            if column.key == "service":
                service = functools.lru_cache(maxsize=64)(service_label)
                return lambda row: [service(row["service"])]
            key = column.key
            return lambda row: [str(row[key])] if row.get(key) not in (None, "") else []

        def invoices(row: dict[str, Any]) -> list[str]:
            numbers = [number for _w, number, _m in row.get("payments") or ()]
            return numbers or (opening if row.get("opening") else [])

        out: list[Any] = []
        for column in self.columns:
            key = column.key
            if key == "paid_on":
                out.append(lambda row: [day(when) for when, _n, _m in row.get("payments") or ()])
            elif key == "invoices":
                out.append(invoices)
            elif key == "modes":
                out.append(lambda row: [label(mode) for _w, _n, mode in row.get("payments") or ()])
            elif column.kind == "money":
                out.append(lambda row, key=key: [amount(row.get(key, 0))])
            elif column.kind == "count":
                out.append(lambda row, key=key: [i18n.number(row.get(key, 0))])
            else:
                out.append(text(column))
        return out

    def _cells(self, row: dict[str, Any]) -> list[list[str]]:
        return [cell(row) for cell in self._formatters_list]

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self.totals.add(row)
            lines = self.grid.lines(self._cells(row))
            self._place("\n".join(lines), len(lines) * LINE_PT)
            self._chunk_rows += 1

    # -- pages and chunks -----------------------------------------------------------------

    def _new_page(self, *, first: bool) -> _Page:
        return _Page(first=first, used=(HEADER_PT if first else 0.0) + self._headings_pt)

    def _place(self, text: str, height: float) -> None:
        page = self._page
        if page.rows and page.used + height > CONTENT_HEIGHT_PT:
            self._end_page()
            page = self._page
        page.rows.append((text, (self.totals.count - 1) % 2 == 1))
        page.used += height

    def _end_page(self) -> None:
        self._pages.append(self._page)
        self._page = self._new_page(first=False)
        if len(self._pages) >= self.chunk_pages:
            self._flush(self._pages, last=False)
            self._pages = []

    def _chunk_html(self, pages: list[_Page], *, totals: list[str] | None) -> str:
        footer = f"{self.heading.office} · {self.heading.title} · {self.heading.generated}"
        return (
            _environment()
            .get_template("reports/pdf_chunk.html")
            .render(
                lang=self._lang,
                css=_css(),
                footer=css_string(footer),
                heading=self.heading,
                headings=self._headings,
                pages=pages,
                totals=totals,
                empty=self.totals.count == 0,
            )
        )

    def _totals_lines(self) -> list[str]:
        """The summary printed after the table, one line per figure."""
        totals = self.totals.as_dict()
        lines = [(_("Rows"), i18n.number(totals["count"]))]
        for column in self.columns:
            if column.key in ("charged", "paid", "due"):
                lines.append((column.label, i18n.money(totals[column.key], self.currency)))
            elif column.key == "months_pending":
                lines.append((column.label, i18n.number(totals[column.key])))
        label_width = max(len(label) for label, _v in lines) + 2
        value_width = max(len(value) for _l, value in lines)
        return [
            clean_text(label).ljust(label_width) + value.rjust(value_width)
            for label, value in lines
        ]

    def _flush(self, pages: list[_Page], *, last: bool) -> None:
        totals = self._totals_lines() if last else None
        html = self._chunk_html(pages, totals=totals)
        count, self._chunk_rows = self._chunk_rows, 0
        self._chunks += 1
        if self._pool is None:
            self._store(*render_chunk(html), count)
            return
        self._pending.append((self._pool.submit(render_chunk, html), count))
        while len(self._pending) > self._max_pending:
            self._collect_oldest()

    def _collect_oldest(self) -> None:
        future, count = self._pending.popleft()
        self._store(*future.result(), count)

    def _store(self, data: bytes, pages: int, count: int) -> None:
        part = self._tmp / f"{len(self._parts):05d}.pdf"
        part.write_bytes(data)
        self._parts.append((part, pages))
        self.rows_done += count

    # -- the end --------------------------------------------------------------------------

    def close(self) -> Totals:
        """Render what is left, join the chunks with their page numbers, write the file."""
        try:
            # The totals (a caption, one line per figure, the empty notice) stay on one page.
            lines = len(self._totals_lines()) + 1 + (self.totals.count == 0)
            if self._page.used + TOTALS_GAP_PT + lines * LINE_PT > CONTENT_HEIGHT_PT:
                self._pages.append(self._page)
                self._page = self._new_page(first=False)
            self._pages.append(self._page)
            self._flush(self._pages, last=True)
            self._pages = []
            while self._pending:
                self._collect_oldest()
            self._join()
        finally:
            self._shutdown()
        return self.totals

    def abort(self) -> None:
        """Stop the workers and forget the partial output (after an error)."""
        for future, _count in self._pending:
            future.cancel()
        self._pending.clear()
        self._shutdown()

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _stamps(self, total: int) -> Iterable[tuple[bytes, int]]:
        """The stamp documents, :data:`STAMP_PAGES` labels each, in order; rendered by the
        workers when there are workers."""
        htmls = []
        with i18n.use_locale(self._locale):
            for start in range(1, total + 1, STAMP_PAGES):
                labels = [
                    _("Page %(page)s of %(pages)s", page=i18n.number(n), pages=i18n.number(total))
                    for n in range(start, min(start + STAMP_PAGES, total + 1))
                ]
                template = _environment().get_template("reports/pdf_stamp.html")
                htmls.append(template.render(labels=labels))
        if self._pool is None:
            return map(render_chunk, htmls)
        return self._pool.map(render_chunk, htmls)

    def _join(self) -> None:
        import io

        from pypdf import PdfReader, PdfWriter

        total = sum(pages for _part, pages in self._parts)
        writer = PdfWriter()
        writer.add_metadata({"/Title": self.heading.title, "/Author": self.heading.office})
        stamp_documents = iter(self._stamps(total))
        stamps: list[Any] = []
        number = 0
        for part, _pages in self._parts:
            for page in PdfReader(part).pages:
                if number % STAMP_PAGES == 0:
                    stamps = list(PdfReader(io.BytesIO(next(stamp_documents)[0])).pages)
                placed = writer.add_page(page)
                placed.merge_page(stamps[number % STAMP_PAGES])
                placed.compress_content_streams()
                number += 1
        with open(self.path, "wb") as out:
            writer.write(out)
