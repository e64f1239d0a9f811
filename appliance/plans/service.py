"""Plans: the monthly price lists per service."""

from __future__ import annotations

import logging
from typing import Any

from appliance import clock
from appliance.audit import service as audit_log
from appliance.db import write_transaction
from appliance.errors import NotFound, ValidationFailed
from appliance.i18n import gettext as _
from appliance.money import AmountError, parse_amount
from appliance.plans.tables import SERVICES, Plan

log = logging.getLogger(__name__)


def service_label(service: str) -> str:
    return {"cable": _("Cable TV"), "broadband": _("Broadband")}.get(service, service)


def _validate(data: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    if creating:
        service = str(data.get("service") or "")
        if service not in SERVICES:
            errors["service"] = _("Choose cable TV or broadband.")
        values["service"] = service
    name = str(data.get("name") or "").strip()
    if not name:
        errors["name"] = _("Give the plan a name.")
    elif len(name) > 120:
        errors["name"] = _("Use at most 120 characters.")
    values["name"] = name
    try:
        values["monthly_price"] = parse_amount(data.get("monthly_price"))
    except AmountError as exc:
        errors["monthly_price"] = str(exc)
    description = str(data.get("description") or "").strip()
    if len(description) > 2000:
        errors["description"] = _("Use at most 2000 characters.")
    values["description"] = description
    if errors:
        raise ValidationFailed(errors)
    return values


async def create_plan(data: dict[str, Any], *, actor: Any) -> dict[str, Any]:
    values = _validate(data, creating=True)
    async with write_transaction():
        if await Plan.exists().where(
            (Plan.service == values["service"])
            & (Plan.name == values["name"])
            & Plan.retired_at.is_null()
        ):
            raise ValidationFailed({"name": _("A plan with this name already exists.")})
        plan = Plan(**values)
        await plan.save()
        await audit_log.record(
            actor=actor, entity="plan", entity_id=plan.id, action="create", changes=values
        )
    log.info("plan created", extra={"plan_id": str(plan.id)})
    return plan.to_dict()


async def get_plan(plan_id: Any) -> dict[str, Any]:
    rows = await Plan.select().where(Plan.id == plan_id)
    if not rows:
        raise NotFound(_("This plan does not exist."))
    return rows[0]


async def update_plan(plan_id: Any, data: dict[str, Any], *, actor: Any) -> dict[str, Any]:
    """Edit name, price or description. A new price applies to months billed from now on."""
    values = _validate(data, creating=False)
    async with write_transaction():
        before = await get_plan(plan_id)
        if await Plan.exists().where(
            (Plan.service == before["service"])
            & (Plan.name == values["name"])
            & Plan.retired_at.is_null()
            & (Plan.id != plan_id)
        ):
            raise ValidationFailed({"name": _("A plan with this name already exists.")})
        changes = audit_log.diff(before, values)
        if changes:
            await Plan.update({**values, "updated_at": clock.now()}).where(Plan.id == plan_id)
            await audit_log.record(
                actor=actor, entity="plan", entity_id=plan_id, action="update", changes=changes
            )
    return {**before, **values}


async def set_retired(plan_id: Any, retired: bool, *, actor: Any) -> None:
    async with write_transaction():
        await get_plan(plan_id)
        await Plan.update({Plan.retired_at: clock.now() if retired else None}).where(
            Plan.id == plan_id
        )
        await audit_log.record(
            actor=actor,
            entity="plan",
            entity_id=plan_id,
            action="retire" if retired else "reinstate",
        )


async def list_plans(*, service: str | None = None, include_retired: bool = True):
    query = Plan.select().order_by(Plan.service).order_by(Plan.monthly_price)
    if service:
        query = query.where(Plan.service == service)
    if not include_retired:
        query = query.where(Plan.retired_at.is_null())
    return await query
