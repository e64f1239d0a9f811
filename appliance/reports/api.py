"""API: payment reports. A report is a job: create it, poll it, then fetch its file."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.params import FromPath, JSONBody
from litestar.response import File

from appliance.errors import ValidationFailed
from appliance.i18n import gettext as _
from appliance.reports import service as reports
from appliance.web.auth import ADMIN
from appliance.web.forms import settings_of


class ReportIn(msgspec.Struct):
    service: str  # cable, broadband or both
    year: int
    month: int
    classification: str  # paid or unpaid
    file_type: str  # xlsx or pdf
    office: str = ""  # central only: one office's code; empty for every office


class ReportOut(msgspec.Struct):
    id: uuid.UUID
    status: str  # queued, running, done, failed
    service: str
    year: int
    month: int
    classification: str
    file_type: str
    office: str
    rows_total: int
    rows_done: int
    percent: int
    size: int
    error: str
    created_at: dt.datetime
    finished_at: dt.datetime | None
    expires_at: dt.datetime | None
    file_url: str | None

    @classmethod
    def of(cls, job: dict[str, Any]) -> ReportOut:
        done = job["status"] == "done"
        return cls(
            id=job["id"],
            status=job["status"],
            service=job["service"],
            year=job["year"],
            month=job["month"],
            classification=job["classification"],
            file_type=job["file_type"],
            office=job.get("office") or "",
            rows_total=job["rows_total"],
            rows_done=job["rows_done"],
            percent=job["percent"],
            size=job["size"],
            error=job["error"],
            created_at=job["created_at"],
            finished_at=job["finished_at"],
            expires_at=job["expires_at"],
            file_url=f"/api/v1/reports/{job['id']}/file" if done else None,
        )


@post(
    "/reports",
    opt={"roles": ADMIN},
    operation_id="createReport",
    tags=["reports"],
    summary="Ask for a payment report; small ones are done on return, large ones are queued",
)
async def create_report(data: JSONBody[ReportIn], request: Request) -> ReportOut:
    settings = settings_of(request)
    if data.office.strip() and settings.role != "central":
        # A box holds its own office only: a filter naming an office is a mistake of the
        # caller, said so rather than ignored.
        raise ValidationFailed(
            {"office": _("Reports are limited to one office only at the central instance.")}
        )
    job = await reports.create_report(
        msgspec.structs.asdict(data), actor=request.user, settings=settings
    )
    return ReportOut.of(job)


@get(
    "/reports/{job_id:uuid}",
    opt={"roles": ADMIN},
    operation_id="getReport",
    tags=["reports"],
    summary="A report's status and progress, with the address of its file once done",
)
async def get_report(job_id: FromPath[uuid.UUID]) -> ReportOut:
    return ReportOut.of(await reports.get_report(job_id))


@get(
    "/reports/{job_id:uuid}/file",
    opt={"roles": ADMIN},
    operation_id="getReportFile",
    tags=["reports"],
    summary="The finished report: an .xlsx or .pdf file",
)
async def get_report_file(job_id: FromPath[uuid.UUID], request: Request) -> File:
    path, name, media_type = await reports.download(job_id, settings_of(request))
    return File(
        path=path, filename=name, media_type=media_type, content_disposition_type="attachment"
    )


ROUTES = [create_report, get_report, get_report_file]
