"""API: customers. Shares the service functions with the pages."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Request, delete, get, patch, post
from litestar.params import FromPath, JSONBody, QueryParameter

from appliance.customers import service as customers
from appliance.plans.tables import SERVICES
from appliance.web.auth import ADMIN, ANYONE, STAFF
from appliance.web.forms import settings_of


class ConnectionIn(msgspec.Struct, omit_defaults=True):
    plan: uuid.UUID
    registered_on: dt.date
    device_id: str = ""
    expires_on: dt.date | None = None
    status: str = "active"


class CustomerIn(msgspec.Struct, omit_defaults=True):
    name: str | None = None
    mobile: str | None = None
    email: str | None = None
    birth_date: dt.date | None = None
    house: str | None = None
    area: str | None = None
    district: str | None = None
    state: str | None = None
    country: str | None = None
    postal_code: str | None = None
    id_doc_type: str | None = None
    id_doc_number: str | None = None
    cable: ConnectionIn | None = None
    broadband: ConnectionIn | None = None
    confirm_duplicates: bool = False


class ConnectionOut(msgspec.Struct):
    id: uuid.UUID
    service: str
    plan: uuid.UUID
    plan_name: str
    device_id: str
    registered_on: dt.date
    expires_on: dt.date | None
    status: str


class CustomerOut(msgspec.Struct):
    id: uuid.UUID
    crf: str
    name: str
    mobile: str
    email: str
    house: str
    area: str
    district: str
    state: str
    country: str
    postal_code: str
    id_doc_type: str
    id_doc_number: str
    birth_date: dt.date | None
    archived: bool
    connections: list[ConnectionOut]

    @classmethod
    def of(cls, row: dict[str, Any]) -> CustomerOut:
        conns = [
            ConnectionOut(
                id=c["id"],
                service=c["service"],
                plan=c["plan"],
                plan_name=c.get("plan_name") or "",
                device_id=c["device_id"],
                registered_on=c["registered_on"],
                expires_on=c["expires_on"],
                status=c["status"],
            )
            for c in row.get("connections", {}).values()
        ]
        return cls(
            id=row["id"],
            crf=row["crf"],
            name=row["name"],
            mobile=row["mobile"],
            email=row["email"],
            house=row["house"],
            area=row["area"],
            district=row["district"],
            state=row["state"],
            country=row["country"],
            postal_code=row["postal_code"],
            id_doc_type=row["id_doc_type"],
            id_doc_number=row["id_doc_number"],
            birth_date=row["birth_date"],
            archived=row["archived_at"] is not None,
            connections=conns,
        )


class CustomerSummary(msgspec.Struct):
    id: uuid.UUID
    crf: str
    name: str
    mobile: str
    email: str


class CustomerPage(msgspec.Struct):
    items: list[CustomerSummary]
    total: int
    page: int
    per_page: int


def _flatten(
    data: JSONBody[CustomerIn], *, current: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The API's nested body as the flat field names the service validates."""
    flat: dict[str, Any] = {}
    if current:
        flat.update({k: v for k, v in current.items() if k != "connections"})
        for service, conn in current["connections"].items():
            for key in ("plan", "device_id", "registered_on", "expires_on", "status"):
                flat[f"{service}_{key}"] = conn[key]
    raw = msgspec.structs.asdict(data)
    for key, value in raw.items():
        if key in SERVICES or key == "confirm_duplicates" or value is None:
            continue
        flat[key] = value
    for service in SERVICES:
        conn = getattr(data, service)
        if conn is not None:
            for key, value in msgspec.structs.asdict(conn).items():
                flat[f"{service}_{key}"] = "" if value is None else str(value)
    return {k: ("" if v is None else v) for k, v in flat.items()}


@get(
    "/customers",
    opt={"roles": STAFF},
    operation_id="listCustomers",
    tags=["customers"],
    summary="Search customers by part of the CRF, name or mobile",
)
async def list_customers(
    search: Annotated[str, QueryParameter(max_length=200)] = "",
    page: Annotated[int, QueryParameter(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, QueryParameter(ge=1, le=200)] = 25,
) -> CustomerPage:
    result = await customers.search_customers(search, page=page, per_page=per_page)
    return CustomerPage(
        items=[
            CustomerSummary(
                id=r["id"], crf=r["crf"], name=r["name"], mobile=r["mobile"], email=r["email"]
            )
            for r in result.rows
        ],
        total=result.total,
        page=result.page,
        per_page=result.per_page,
    )


@post(
    "/customers",
    opt={"roles": ADMIN},
    operation_id="createCustomer",
    tags=["customers"],
    summary="Register a customer; the welcome e-mail is queued",
)
async def create_customer(data: JSONBody[CustomerIn], request: Request) -> CustomerOut:
    row = await customers.create_customer(
        _flatten(data),
        actor=request.user,
        settings=settings_of(request),
        confirm_duplicates=data.confirm_duplicates,
    )
    return CustomerOut.of(row)


@get(
    "/customers/{customer_id:uuid}",
    opt={"roles": ANYONE},
    operation_id="getCustomer",
    tags=["customers"],
    summary="One customer; customers may read only themselves",
)
async def get_customer(customer_id: FromPath[uuid.UUID], request: Request) -> CustomerOut:
    customers.ensure_can_see(request.user, customer_id)
    return CustomerOut.of(await customers.get_customer(customer_id))


@patch(
    "/customers/{customer_id:uuid}",
    # Field agents take payments but never edit customers: the guard refuses them.
    opt={"roles": (*ADMIN, "customer")},
    operation_id="updateCustomer",
    tags=["customers"],
    summary="Change fields; a customer may change only their own contact fields",
)
async def update_customer(
    customer_id: FromPath[uuid.UUID], data: JSONBody[CustomerIn], request: Request
) -> CustomerOut:
    customers.ensure_can_see(request.user, customer_id)
    current = await customers.get_customer(customer_id)
    if request.user.role == "customer":
        flat = {
            k: v
            for k, v in msgspec.structs.asdict(data).items()
            if v is not None and k not in SERVICES and k != "confirm_duplicates"
        }
    else:
        flat = _flatten(data, current=current)
    row = await customers.update_customer(
        customer_id,
        flat,
        actor=request.user,
        settings=settings_of(request),
        confirm_duplicates=data.confirm_duplicates,
    )
    return CustomerOut.of(row)


@delete(
    "/customers/{customer_id:uuid}",
    opt={"roles": ADMIN},
    operation_id="removeCustomer",
    tags=["customers"],
    summary="Archive a customer (payments and invoices are kept)",
    status_code=204,
)
async def remove_customer(customer_id: FromPath[uuid.UUID], request: Request) -> None:
    await customers.archive_customer(customer_id, actor=request.user)


ROUTES = [list_customers, create_customer, get_customer, update_customer, remove_customer]
