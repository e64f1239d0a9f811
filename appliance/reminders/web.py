"""Reminder sender pages: choose who owes, send, watch the progress."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from appliance.errors import ValidationFailed
from appliance.reminders import service as reminders
from appliance.web.auth import ADMIN
from appliance.web.forms import see_other, settings_of

FILTER_FIELDS = ("service", "min_due", "min_months")


async def _page(
    request: Request,
    values: dict[str, Any],
    *,
    errors: dict[str, str] | None = None,
    selection: dict[str, Any] | None = None,
    status: int = 200,
) -> Template:
    return Template(
        "reminders/select.html",
        status_code=status,
        context={
            "values": values,
            "errors": errors or {},
            "selection": selection,
            "interval_days": settings_of(request).reminder_interval_days,
            "batches": await reminders.recent_batches(),
        },
    )


@get("/reminders", opt={"roles": ADMIN})
async def reminders_page(request: Request) -> Template:
    values = {k: request.query_params.get(k, "") for k in FILTER_FIELDS}
    if "show" not in request.query_params:
        return await _page(request, values)
    criteria, errors = reminders.parse_criteria(values)
    if errors:
        return await _page(request, values, errors=errors, status=422)
    selection = await reminders.select_customers(settings_of(request), criteria)
    return await _page(request, values, selection=selection)


@post("/reminders/send", opt={"roles": ADMIN}, status_code=200)
async def send_reminders(request: Request) -> Template | Redirect:
    form = await request.form()
    values = {k: str(form.get(k) or "") for k in FILTER_FIELDS}
    criteria, errors = reminders.parse_criteria(values)
    chosen = [v for v in form.getall("customer", []) if isinstance(v, str)]
    settings = settings_of(request)
    try:
        if errors:
            raise ValidationFailed(errors)
        batch = await reminders.start_batch(
            settings, criteria, chosen, force=form.get("force") == "1", actor=request.user
        )
    except ValidationFailed as exc:
        selection = None if errors else await reminders.select_customers(settings, criteria)
        return await _page(request, values, errors=exc.errors, selection=selection, status=422)
    reminders.kick()
    return see_other(f"/reminders/batches/{batch['id']}")


@get("/reminders/batches/{batch_id:uuid}", opt={"roles": ADMIN})
async def batch_page(batch_id: FromPath[UUID]) -> Template:
    batch = await reminders.get_batch(batch_id)
    rows = await reminders.batch_reminders(batch_id) if batch["status"] == "done" else []
    return Template("reminders/batch.html", context={"batch": batch, "rows": rows})


@get("/reminders/batches/{batch_id:uuid}/progress", opt={"roles": ADMIN})
async def batch_progress(batch_id: FromPath[UUID]) -> Template:
    return Template(
        "reminders/_progress.html", context={"batch": await reminders.get_batch(batch_id)}
    )


ROUTES = [reminders_page, send_reminders, batch_page, batch_progress]
