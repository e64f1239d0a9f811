"""Report pages: the form and recent reports, a report's progress, the download."""

from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

from litestar import Request, get, post
from litestar.params import FromPath
from litestar.response import File, Redirect, Template

from appliance import clock, i18n
from appliance.errors import ValidationFailed
from appliance.reports import service as reports
from appliance.reports.columns import (
    CLASSIFICATIONS,
    FILE_TYPES,
    SERVICES,
    classification_label,
    file_type_label,
    service_choice_label,
)
from appliance.reports.validation import FIRST_YEAR
from appliance.sync import review
from appliance.web.auth import ADMIN
from appliance.web.forms import form_data, see_other, settings_of


def _defaults(today: dt.date) -> dict[str, str]:
    """Last month, unpaid, Excel: what the office most often asks for."""
    last = today.replace(day=1) - dt.timedelta(days=1)
    return {
        "service": "both",
        "year": str(last.year),
        "month": str(last.month),
        "classification": "unpaid",
        "file_type": "xlsx",
    }


async def _form_page(
    request: Request, values: dict[str, Any], errors: dict[str, str], *, status: int = 200
) -> Template:
    settings = settings_of(request)
    today = clock.today(settings.tz)
    return Template(
        "reports/index.html",
        status_code=status,
        context={
            "values": values,
            "errors": errors,
            "services": [(s, service_choice_label(s)) for s in SERVICES],
            "months": [(str(m), i18n.month_name(m)) for m in range(1, 13)],
            "years": [(str(y), str(y)) for y in range(today.year, FIRST_YEAR - 1, -1)],
            "classifications": [(c, classification_label(c)) for c in CLASSIFICATIONS],
            "file_types": [(f, file_type_label(f)) for f in FILE_TYPES],
            "jobs": await reports.recent_reports(),
            "office_choices": await review.office_choices() if review.is_central(settings) else [],
        },
    )


def _file(path: Any, name: str, media_type: str) -> File:
    return File(
        path=path, filename=name, media_type=media_type, content_disposition_type="attachment"
    )


@get("/reports", opt={"roles": ADMIN})
async def report_index(request: Request) -> Template:
    return await _form_page(request, _defaults(clock.today(settings_of(request).tz)), {})


@post("/reports", opt={"roles": ADMIN}, status_code=200)
async def create_report(request: Request) -> Template | Redirect | File:
    data = await form_data(request)
    settings = settings_of(request)
    try:
        job = await reports.create_report(data, actor=request.user, settings=settings)
    except ValidationFailed as exc:
        return await _form_page(request, data, exc.errors, status=422)
    if job["status"] == "done" and not job["background"]:
        # Built while the admin waited: the answer is the file itself.
        return _file(*await reports.download(job["id"], settings))
    return see_other(f"/reports/{job['id']}")


@get("/reports/{job_id:uuid}", opt={"roles": ADMIN})
async def report_page(job_id: FromPath[UUID]) -> Template:
    return Template("reports/job.html", context={"job": await reports.get_report(job_id)})


@get("/reports/{job_id:uuid}/progress", opt={"roles": ADMIN})
async def report_progress(job_id: FromPath[UUID]) -> Template:
    return Template("reports/_job.html", context={"job": await reports.get_report(job_id)})


@get("/reports/{job_id:uuid}/file", opt={"roles": ADMIN})
async def report_file(job_id: FromPath[UUID], request: Request) -> File:
    return _file(*await reports.download(job_id, settings_of(request)))


ROUTES = [report_index, create_report, report_page, report_progress, report_file]
