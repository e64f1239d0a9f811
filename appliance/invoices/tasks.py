"""Background rendering of invoice PDFs, so recording a payment never waits for WeasyPrint."""

from __future__ import annotations

import logging
from typing import Any

from appliance.invoices.service import ensure_pdf
from appliance.jobs.queue import enqueue_quietly, huey, run_async, task_settings

log = logging.getLogger(__name__)


@huey.task(name="render_invoice_pdf")
def render_invoice_pdf(
    number: str, layout: str = "a4", locale: str | None = None
) -> dict[str, Any]:
    """Render (or find intact in the cache) the PDF of one invoice; return what was done."""
    settings = task_settings()
    path = run_async(lambda: ensure_pdf(settings, number, layout, locale=locale))
    return {"number": number, "layout": layout, "file": path.name, "bytes": path.stat().st_size}


def schedule_render(number: str, *, locale: str | None = None) -> None:
    """Ask the worker for the A4 PDF of a new invoice. Call after the payment's transaction
    committed; a queue that cannot be reached only means the PDF is made on first download."""
    enqueue_quietly(render_invoice_pdf, number, "a4", locale)
