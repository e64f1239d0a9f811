"""API: complaints. A customer raises and reads only their own; staff raise on a customer's
behalf; the office lists all and resolves."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.params import FromPath, JSONBody, QueryParameter

from appliance.complaints import service as complaints
from appliance.errors import ValidationFailed
from appliance.i18n import gettext as _
from appliance.web.auth import ADMIN, ANYONE, CUSTOMER
from appliance.web.forms import settings_of

Category = Annotated[
    str,
    msgspec.Meta(
        description="no_signal, set_top_box, billing, broadband_down, slow_speed or other"
    ),
]


class ComplaintIn(msgspec.Struct):
    category: Category
    message: Annotated[str, msgspec.Meta(max_length=complaints.MAX_MESSAGE * 2)]
    customer_id: uuid.UUID | None = None
    crf: str | None = None


class ResolutionIn(msgspec.Struct):
    resolution: Annotated[str, msgspec.Meta(max_length=complaints.MAX_MESSAGE * 2)]


class EventOut(msgspec.Struct):
    at: dt.datetime
    kind: str
    text: str
    visible_to_customer: bool


class ComplaintOut(msgspec.Struct):
    id: uuid.UUID
    number: str
    customer_id: uuid.UUID
    crf: str
    category: str
    message: str
    status: str
    raised_at: dt.datetime
    read_at: dt.datetime | None
    resolved_at: dt.datetime | None
    resolution: str
    events: list[EventOut] | None = None

    @classmethod
    def of(cls, row: dict[str, Any], *, with_events: bool = False) -> ComplaintOut:
        events = None
        if with_events:
            events = [
                EventOut(
                    at=e["at"],
                    kind=e["kind"],
                    text=e["text"],
                    visible_to_customer=e["visible_to_customer"],
                )
                for e in row.get("events", [])
            ]
        return cls(
            id=row["id"],
            number=row["number"],
            customer_id=row["customer"],
            crf=row["crf"],
            category=row["category"],
            message=row["message"],
            status=row["status"],
            raised_at=row["raised_at"],
            read_at=row["read_at"],
            resolved_at=row["resolved_at"],
            resolution=row["resolution"],
            events=events,
        )


class ComplaintPage(msgspec.Struct):
    items: list[ComplaintOut]
    total: int
    page: int
    per_page: int


async def _target_customer(data: ComplaintIn, request: Request) -> Any:
    identity = request.user
    if identity.role in CUSTOMER:
        # A customer raises for themselves; naming anyone else is refused by the service.
        return data.customer_id or identity.customer_id
    if data.customer_id is not None:
        return data.customer_id
    if data.crf:
        found = await complaints.customer_by_crf(data.crf)
        if found:
            return found["id"]
        raise ValidationFailed({"crf": _("No customer has this number.")})
    raise ValidationFailed({"customer_id": _("Say which customer: customer_id or crf.")})


@post(
    "/complaints",
    opt={"roles": ANYONE},
    operation_id="raiseComplaint",
    tags=["complaints"],
    summary="Raise a complaint (a customer for themselves, staff for a customer); "
    "the customer is e-mailed its number",
    status_code=201,
)
async def raise_complaint(data: JSONBody[ComplaintIn], request: Request) -> ComplaintOut:
    row = await complaints.raise_complaint(
        await _target_customer(data, request),
        category=data.category,
        message=data.message,
        actor=request.user,
        settings=settings_of(request),
    )
    return ComplaintOut.of(row, with_events=True)


@get(
    "/complaints",
    opt={"roles": (*ADMIN, *CUSTOMER)},
    operation_id="listComplaints",
    tags=["complaints"],
    summary="Complaints newest first; a customer sees only their own",
)
async def list_complaints(
    request: Request,
    status: Annotated[str | None, QueryParameter(description="open or resolved")] = None,
    category: Annotated[str | None, QueryParameter(max_length=24)] = None,
    unread: Annotated[bool | None, QueryParameter()] = None,
    customer_id: Annotated[uuid.UUID | None, QueryParameter()] = None,
    page: Annotated[int, QueryParameter(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, QueryParameter(ge=1, le=200)] = 25,
) -> ComplaintPage:
    if request.user.role in CUSTOMER:
        customer_id = request.user.customer_id
    result = await complaints.list_complaints(
        status=status,
        category=category,
        unread=unread,
        customer_id=customer_id,
        page=page,
        per_page=per_page,
    )
    return ComplaintPage(
        items=[ComplaintOut.of(r) for r in result.rows],
        total=result.total,
        page=result.page,
        per_page=result.per_page,
    )


@get(
    "/complaints/{complaint_id:uuid}",
    opt={"roles": (*ADMIN, *CUSTOMER)},
    operation_id="getComplaint",
    tags=["complaints"],
    summary="One complaint with its history; a customer may read only their own",
)
async def get_complaint(complaint_id: FromPath[uuid.UUID], request: Request) -> ComplaintOut:
    row = await complaints.get_complaint(complaint_id, viewer=request.user)
    return ComplaintOut.of(row, with_events=True)


@post(
    "/complaints/{complaint_id:uuid}/resolve",
    opt={"roles": ADMIN},
    operation_id="resolveComplaint",
    tags=["complaints"],
    summary="Resolve a complaint; the customer is e-mailed the resolution note",
    status_code=200,
)
async def resolve_complaint(
    complaint_id: FromPath[uuid.UUID], data: JSONBody[ResolutionIn], request: Request
) -> ComplaintOut:
    row = await complaints.resolve_complaint(
        complaint_id,
        resolution=data.resolution,
        actor=request.user,
        settings=settings_of(request),
    )
    return ComplaintOut.of(row, with_events=True)


ROUTES = [raise_complaint, list_complaints, get_complaint, resolve_complaint]
