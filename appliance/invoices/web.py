"""Invoice pages: the printable invoice (A4 or thermal receipt) and its PDF download."""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response, get
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from appliance import i18n
from appliance.invoices import render
from appliance.invoices import service as invoices
from appliance.web.auth import ANYONE
from appliance.web.forms import settings_of

log = logging.getLogger(__name__)


def pdf_response(data: bytes, number: str) -> Response[bytes]:
    # The number matched invoices.NUMBER (capitals, digits, dashes): safe in a header.
    return Response(
        content=data,
        media_type="application/pdf",
        headers={"content-disposition": f'attachment; filename="{number}.pdf"'},
    )


async def pdf_bytes(
    request: Request[Any, Any, Any], view: dict[str, Any], layout: str
) -> bytes | None:
    """The invoice's PDF from the cache (rendered again if needed), or ``None`` after logging
    why it could not be made: the caller answers with a friendly message, never a 500."""
    try:
        path = await invoices.ensure_pdf(
            settings_of(request),
            view["number"],
            render.layout_or_default(layout),
            locale=i18n.current_locale(),
            view=view,
        )
        return path.read_bytes()
    except Exception:
        log.exception("invoice PDF could not be made", extra={"number": view["number"]})
        return None


async def _pdf(request: Request[Any, Any, Any], number: str, layout: str) -> Response[Any]:
    view = await invoices.visible_invoice(request.user, number)
    data = await pdf_bytes(request, view, layout)
    if data is None:
        return Template(
            "invoices/pdf_unavailable.html",
            status_code=503,
            context={"number": view["number"], "layout": render.layout_or_default(layout)},
        )
    return pdf_response(data, view["number"])


@get("/invoices/{number:str}", opt={"roles": ANYONE})
async def invoice_page(
    request: Request[Any, Any, Any],
    number: FromPath[str],
    layout: FromQuery[str] = "a4",
    autoprint: FromQuery[bool] = False,
) -> Response[Any]:
    """The printable invoice; ``/invoices/<number>.pdf`` is the download, like ``/pdf``."""
    if number.lower().endswith(".pdf"):
        return await _pdf(request, number[:-4], layout)
    view = await invoices.visible_invoice(request.user, number)
    body = render.render_html(
        view, settings_of(request), layout=layout, screen=True, autoprint=autoprint
    )
    return Response(content=body, media_type=MediaType.HTML)


@get("/invoices/{number:str}/pdf", opt={"roles": ANYONE})
async def invoice_pdf(
    request: Request[Any, Any, Any], number: FromPath[str], layout: FromQuery[str] = "a4"
) -> Response[Any]:
    return await _pdf(request, number, layout)


ROUTES = [invoice_page, invoice_pdf]
