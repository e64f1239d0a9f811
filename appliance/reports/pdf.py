"""The PDF writer: a long table rendered in chunks, with bounded memory.

WeasyPrint lays a table out at about 7 ms and 0.1 MB per row, and keeps the whole document in
memory until it is written: one 20,000-row document would take minutes and gigabytes. So rows
are cut into chunks of :data:`CHUNK_ROWS`; each chunk is an HTML document of its own (the
heading on the first, the totals row on the last, the table header repeated on every page by
WeasyPrint), rendered to a temporary PDF, optionally in worker processes so that every core of
the box works. Memory is one chunk per worker plus the finished pages' bytes.

"Page X of Y" cannot be known while chunks are rendered one by one, so it is added at the end:
small stamp pages carrying only the page label are rendered by WeasyPrint (same font), and
pypdf lays each over its page while joining the chunks into the final file.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import multiprocessing
import shutil
import tempfile
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from appliance import i18n
from appliance.i18n import gettext as _
from appliance.reports.columns import (
    Column,
    Heading,
    Totals,
    cell_value,
    mode_label,
    opening_label,
)

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
TEMPLATES = HERE.parent / "web" / "templates"
CHUNK_ROWS = 200
STAMP_PAGES = 200  # stamp pages rendered per WeasyPrint document


@cache
def _css() -> str:
    return (HERE / "pdf.css").read_text()


@cache
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
        chunk_rows: int = CHUNK_ROWS,
    ) -> None:
        self.path = path
        self.heading = heading
        self.columns = columns
        self.currency = currency
        self.chunk_rows = chunk_rows
        self.totals = Totals()
        self.rows_done = 0
        self._rows: list[list[list[str]]] = []
        self._offset = 0
        self._chunks = 0
        self._parts: list[tuple[Path, int]] = []
        self._pending: collections.deque[tuple[Any, int]] = collections.deque()
        self._tmp = Path(tempfile.mkdtemp(prefix=".pdf-", dir=path.parent))
        total = sum(c.pdf_width for c in columns)
        self._widths = [round(100 * c.pdf_width / total, 2) for c in columns]
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

    def _cells(self, row: dict[str, Any]) -> list[list[str]]:
        cells: list[list[str]] = []
        payments = row.get("payments") or ()
        for column in self.columns:
            key, kind = column.key, column.kind
            if key == "paid_on":
                cells.append([i18n.date(when, "short") for when, _n, _m in payments])
            elif key == "invoices":
                numbers = [number for _w, number, _m in payments]
                cells.append(numbers or ([opening_label()] if row.get("opening") else []))
            elif key == "modes":
                cells.append([mode_label(mode) for _w, _n, mode in payments])
            elif kind == "money":
                cells.append([i18n.money(row.get(key, 0), self.currency)])
            elif kind == "count":
                cells.append([i18n.number(row.get(key, 0))])
            else:
                value = cell_value(row, column)
                cells.append([str(value)] if value not in (None, "") else [])
        return cells

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self.totals.add(row)
            self._rows.append(self._cells(row))
            if len(self._rows) >= self.chunk_rows:
                self._flush(last=False)

    # -- chunks ---------------------------------------------------------------------------

    def _chunk_html(self, rows: list[list[list[str]]], *, first: bool, last: bool) -> str:
        totals = self._totals_lines() if last else None
        footer = f"{self.heading.office} · {self.heading.title} · {self.heading.generated}"
        return (
            _environment()
            .get_template("reports/pdf_chunk.html")
            .render(
                lang=self._lang,
                css=_css(),
                footer=css_string(footer),
                heading=self.heading,
                columns=self.columns,
                widths=self._widths,
                rows=rows,
                offset=self._offset,
                first=first,
                totals=totals,
                empty=self.totals.count == 0,
            )
        )

    def _totals_lines(self) -> list[tuple[str, str]]:
        """(label, value) of the summary printed after the table."""
        totals = self.totals.as_dict()
        lines = [(_("Rows"), i18n.number(totals["count"]))]
        for column in self.columns:
            if column.key in ("charged", "paid", "due"):
                lines.append((column.label, i18n.money(totals[column.key], self.currency)))
            elif column.key == "months_pending":
                lines.append((column.label, i18n.number(totals[column.key])))
        return lines

    def _flush(self, *, last: bool) -> None:
        rows, self._rows = self._rows, []
        html = self._chunk_html(rows, first=self._chunks == 0, last=last)
        self._offset += len(rows)
        self._chunks += 1
        if self._pool is None:
            self._store(*render_chunk(html), len(rows))
            return
        self._pending.append((self._pool.submit(render_chunk, html), len(rows)))
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
            self._flush(last=True)
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

    def _stamps(self, start: int, count: int, total: int) -> bytes:
        with i18n.use_locale(self._locale):
            labels = [
                _("Page %(page)s of %(pages)s", page=i18n.number(n), pages=i18n.number(total))
                for n in range(start, start + count)
            ]
        html = _environment().get_template("reports/pdf_stamp.html").render(labels=labels)
        return render_chunk(html)[0]

    def _join(self) -> None:
        import io

        from pypdf import PdfReader, PdfWriter

        total = sum(pages for _part, pages in self._parts)
        writer = PdfWriter()
        writer.add_metadata({"/Title": self.heading.title, "/Author": self.heading.office})
        stamps: list[Any] = []
        number = 0
        for part, _pages in self._parts:
            for page in PdfReader(part).pages:
                if number % STAMP_PAGES == 0:
                    count = min(STAMP_PAGES, total - number)
                    stamp_pdf = self._stamps(number + 1, count, total)
                    stamps = list(PdfReader(io.BytesIO(stamp_pdf)).pages)
                placed = writer.add_page(page)
                placed.merge_page(stamps[number % STAMP_PAGES])
                placed.compress_content_streams()
                number += 1
        with open(self.path, "wb") as out:
            writer.write(out)
