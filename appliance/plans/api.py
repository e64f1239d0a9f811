"""API: plans."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec
from litestar import Request, get, post
from litestar.params import FromQuery, JSONBody

from appliance.plans import service as plans
from appliance.web.auth import ADMIN, ANYONE


class PlanIn(msgspec.Struct):
    service: str
    name: str
    monthly_price: str | int
    description: str = ""


class PlanOut(msgspec.Struct):
    id: uuid.UUID
    service: str
    name: str
    monthly_price: int
    description: str
    retired: bool
    created_at: dt.datetime

    @classmethod
    def of(cls, row: dict) -> PlanOut:
        return cls(
            id=row["id"],
            service=row["service"],
            name=row["name"],
            monthly_price=row["monthly_price"],
            description=row["description"],
            retired=row["retired_at"] is not None,
            created_at=row["created_at"],
        )


@get(
    "/plans",
    opt={"roles": ANYONE},
    operation_id="listPlans",
    tags=["plans"],
    summary="List plans (prices in minor units)",
)
async def list_plans(service: FromQuery[str | None] = None) -> list[PlanOut]:
    return [PlanOut.of(p) for p in await plans.list_plans(service=service)]


@post(
    "/plans",
    opt={"roles": ADMIN},
    operation_id="createPlan",
    tags=["plans"],
    summary='Create a plan; monthly_price is a decimal string such as "89.90"',
)
async def create_plan(data: JSONBody[PlanIn], request: Request) -> PlanOut:
    row = await plans.create_plan(msgspec.structs.asdict(data), actor=request.user)
    return PlanOut.of(row)


ROUTES = [list_plans, create_plan]
