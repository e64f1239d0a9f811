"""API: invoices, as JSON and as PDF. Same rule as the pages: staff read any invoice, a customer
only their own (someone else's answers 404)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
from litestar import MediaType, Request, Response, get
from litestar.params import FromPath, FromQuery

from appliance.i18n import gettext as _
from appliance.invoices import service as invoices
from appliance.invoices.web import pdf_bytes, pdf_response
from appliance.web.auth import ANYONE


class InvoiceOffice(msgspec.Struct):
    code: str
    name: str
    address: str = ""


class InvoiceCustomer(msgspec.Struct):
    crf: str
    name: str
    house: str = ""
    area: str = ""
    district: str = ""
    state: str = ""
    postal_code: str = ""
    mobile: str = ""
    email: str = ""


class InvoiceLine(msgspec.Struct):
    service: str
    plan_name: str
    year: int
    month: int
    amount: int


class InvoiceOut(msgspec.Struct):
    """Amounts are integers in minor units (cents) of ``currency``."""

    number: str
    issued_at: dt.datetime
    customer_id: uuid.UUID
    office: InvoiceOffice
    customer: InvoiceCustomer
    lines: list[InvoiceLine]
    amount_paid: int
    mode: str
    reference: str
    received_by: str
    credit: int
    remaining_due: int
    currency: str
    reversed: bool
    reversal_reason: str
    pdf_url: str

    @classmethod
    def of(cls, view: dict[str, Any]) -> InvoiceOut:
        known = {f for f in cls.__struct_fields__ if f != "pdf_url"}
        data = {k: v for k, v in view.items() if k in known}
        data["pdf_url"] = f"/api/v1/invoices/{view['number']}/pdf"
        return msgspec.convert(data, cls, from_attributes=True)


@get(
    "/invoices/{number:str}",
    opt={"roles": ANYONE},
    operation_id="getInvoice",
    tags=["invoices"],
    summary="One invoice: months settled, amounts, payment mode and reference",
)
async def get_invoice(request: Request[Any, Any, Any], number: FromPath[str]) -> InvoiceOut:
    return InvoiceOut.of(await invoices.visible_invoice(request.user, number))


@get(
    "/invoices/{number:str}/pdf",
    opt={"roles": ANYONE},
    operation_id="getInvoicePdf",
    tags=["invoices"],
    summary="The invoice as PDF (layout a4, 80mm or 58mm)",
    media_type="application/pdf",
)
async def get_invoice_pdf(
    request: Request[Any, Any, Any], number: FromPath[str], layout: FromQuery[str] = "a4"
) -> Response[Any]:
    view = await invoices.visible_invoice(request.user, number)
    data = await pdf_bytes(request, view, layout)
    if data is None:
        return Response(
            {
                "error": "pdf_unavailable",
                "message": _("The PDF could not be made right now. Try again in a few minutes."),
            },
            status_code=503,
            media_type=MediaType.JSON,
        )
    return pdf_response(data, view["number"])


ROUTES = [get_invoice, get_invoice_pdf]
