"""Report jobs: ask for a report, build it (at once or in the worker), keep it a while.

A request is validated, its rows counted, and a ``report_jobs`` row recorded. Small reports are
built right away in a thread of the web process, so the file comes back with the answer; larger
ones go to the job queue, and the page polls :func:`get_report` for the progress. Files live in
``<data dir>/reports`` under the job's id, are written to a temporary name and renamed when
complete, and are deleted :data:`KEEP_FOR` after they were made.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from appliance import clock, i18n
from appliance.errors import NotFound
from appliance.i18n import gettext as _
from appliance.reports import rows as report_rows
from appliance.reports.columns import (
    FILE_TYPES,
    Heading,
    ReportFilter,
    Totals,
    classification_label,
    columns_for,
    download_name,
    file_type_label,
    month_label,
    service_choice_label,
)
from appliance.reports.tables import ReportJob
from appliance.reports.validation import clean_request
from appliance.settings import Settings

log = logging.getLogger(__name__)

KEEP_FOR = dt.timedelta(days=2)
# A job still queued or running after this long was lost (the worker stopped mid-way).
STALE_AFTER = dt.timedelta(hours=3)
RECENT = 20
# Up to this many rows a report is built while the admin waits (about two seconds either way).
INLINE_ROWS = {"xlsx": 5000, "pdf": 150}
PROGRESS_EVERY_S = 0.5
MEDIA_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}


def reports_dir(settings: Settings) -> Path:
    return settings.data_dir / "reports"


def file_path(settings: Settings, job: Mapping[str, Any]) -> Path:
    """Where a job's file lives: from its id and file type only, both checked here."""
    job_id = uuid.UUID(str(job["id"]))
    file_type = job["file_type"]
    if file_type not in FILE_TYPES:
        raise ValueError(f"unknown file type {file_type!r}")
    return reports_dir(settings) / f"{job_id}.{file_type}"


def report_of(job: Mapping[str, Any]) -> ReportFilter:
    return ReportFilter(
        service=job["service"],
        year=job["year"],
        month=job["month"],
        classification=job["classification"],
        file_type=job["file_type"],
        office=job.get("office") or "",
    )


def pdf_workers() -> int:
    """Processes rendering a large PDF: one per core, at most three (each takes ~150 MB)."""
    return max(1, min(3, os.cpu_count() or 1))


# -- asking ---------------------------------------------------------------------------------


async def create_report(
    data: Mapping[str, Any], *, actor: Any, settings: Settings
) -> dict[str, Any]:
    """Validate the filters and record the job; build it now when it is small, else queue it.

    Returns the job (see :func:`get_report`), with ``background`` telling which way it went;
    a job built at once is ``done`` (or ``failed``).
    """
    offices = None
    if settings.role == "central":
        from appliance.sync.review import office_choices

        offices = [code for code, _name in await office_choices()]
    report = clean_request(data, today=clock.today(settings.tz), offices=offices)
    await cleanup(settings)
    total = await report_rows.count_rows(report)
    job = ReportJob(
        requested_by=getattr(actor, "id", None),
        service=report.service,
        year=report.year,
        month=report.month,
        classification=report.classification,
        file_type=report.file_type,
        office=report.office,
        locale=i18n.current_locale(),
        rows_total=total,
    )
    await job.save()
    log.info(
        "report requested",
        extra={
            "job_id": str(job.id),
            "service": report.service,
            "period": f"{report.year:04d}-{report.month:02d}",
            "classification": report.classification,
            "file_type": report.file_type,
            "rows": total,
        },
    )
    background = total > INLINE_ROWS[report.file_type]
    if not background:
        from appliance.jobs.queue import run_async

        await asyncio.to_thread(run_async, lambda: build_report(job.id, settings, workers=0))
    else:
        from appliance.reports.tasks import build_report_task

        try:
            build_report_task(str(job.id))
        except Exception:
            log.exception("could not queue report %s", job.id)
            await _fail(job.id, _("The job queue could not be reached. Try again in a moment."))
    return {**await get_report(job.id), "background": background}


async def get_report(job_id: Any) -> dict[str, Any]:
    try:
        key = uuid.UUID(str(job_id))
    except ValueError as exc:
        raise NotFound(_("This report does not exist.")) from exc
    rows = await ReportJob.select().where(ReportJob.id == key)
    if not rows:
        raise NotFound(_("This report does not exist or was deleted."))
    return _view(rows[0])


async def recent_reports(limit: int = RECENT) -> list[dict[str, Any]]:
    rows = await ReportJob.select().order_by(ReportJob.created_at, ascending=False).limit(limit)
    return [_view(r) for r in rows]


def _view(row: dict[str, Any]) -> dict[str, Any]:
    total, done = row["rows_total"], row["rows_done"]
    if row["status"] == "done":
        percent = 100
    elif total:
        percent = min(99, done * 100 // total)
    else:
        percent = 0
    return {
        **row,
        "percent": percent,
        "finished": row["status"] in ("done", "failed"),
        "label": report_label(report_of(row)),
        "file_label": file_type_label(row["file_type"]),
    }


def report_label(report: ReportFilter) -> str:
    """ "Unpaid · Broadband · November 2026" in the current language."""
    parts = (
        classification_label(report.classification),
        service_choice_label(report.service),
        month_label(report.year, report.month),
    )
    return " · ".join(parts + ((report.office,) if report.office else ()))


async def download(job_id: Any, settings: Settings) -> tuple[Path, str, str]:
    """(path, file name for the browser, media type) of a finished report."""
    job = await get_report(job_id)
    path = file_path(settings, job)
    if job["status"] != "done" or not path.is_file():
        raise NotFound(_("This report is not ready, or it was deleted after two days."))
    report = report_of(job)
    name = download_name(report, report.office or settings.office_code)
    return path, name, MEDIA_TYPES[job["file_type"]]


# -- building -------------------------------------------------------------------------------


async def _fail(job_id: Any, message: str) -> None:
    await ReportJob.update(
        {ReportJob.status: "failed", ReportJob.error: message, ReportJob.finished_at: clock.now()}
    ).where(ReportJob.id == job_id)


async def build_report(job_id: Any, settings: Settings, *, workers: int | None = None):
    """Write the job's file, updating its progress; the body of the background task.

    ``workers`` is the number of processes rendering a PDF (``None``: :func:`pdf_workers`).
    Returns a summary, or None when the job was not waiting (already taken, or deleted).
    """
    job_id = uuid.UUID(str(job_id))
    claimed = (
        await ReportJob.update({ReportJob.status: "running"})
        .where((ReportJob.id == job_id) & (ReportJob.status == "queued"))
        .returning(ReportJob.id)
    )
    if not claimed:
        return None
    job = (await ReportJob.select().where(ReportJob.id == job_id))[0]
    started = time.monotonic()
    with i18n.use_locale(job["locale"]):
        try:
            count = pdf_workers() if workers is None else workers
            totals = await _write(job, settings, workers=count)
        except Exception:
            log.exception("report %s failed", job_id)
            await _fail(job_id, _("The report could not be made. The problem was logged."))
            return {"job_id": str(job_id), "status": "failed"}
    path = file_path(settings, job)
    now = clock.now()
    await ReportJob.update(
        {
            ReportJob.status: "done",
            ReportJob.rows_done: totals.count,
            ReportJob.rows_total: totals.count,
            ReportJob.size: path.stat().st_size,
            ReportJob.finished_at: now,
            ReportJob.expires_at: now + KEEP_FOR,
        }
    ).where(ReportJob.id == job_id)
    summary = {
        "job_id": str(job_id),
        "status": "done",
        "file_type": job["file_type"],
        "rows": totals.count,
        "bytes": path.stat().st_size,
        "seconds": round(time.monotonic() - started, 2),
    }
    log.info("report built", extra=summary)
    return summary


async def _write(job: dict[str, Any], settings: Settings, *, workers: int) -> Totals:
    from appliance.reports.pdf import PdfReport
    from appliance.reports.xlsx import XlsxReport

    report = report_of(job)
    heading = Heading.of(
        report, office=settings.office_name, generated_at=clock.now(), tz=settings.tz
    )
    final = file_path(settings, job)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".{final.name}.part")
    columns = columns_for(report)
    if report.file_type == "pdf":
        writer: Any = PdfReport(
            partial,
            heading=heading,
            columns=columns,
            currency=settings.currency,
            workers=workers if job["rows_total"] > INLINE_ROWS["pdf"] else 0,
        )
    else:
        writer = XlsxReport(partial, heading=heading, columns=columns, currency=settings.currency)
    last_update = time.monotonic()
    try:
        async for batch in report_rows.iter_rows(report):
            writer.add(batch)
            if time.monotonic() - last_update >= PROGRESS_EVERY_S:
                await ReportJob.update({ReportJob.rows_done: writer.rows_done}).where(
                    ReportJob.id == job["id"]
                )
                last_update = time.monotonic()
        totals = writer.close()
    except BaseException:
        writer.abort()
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, final)
    return totals


# -- keeping --------------------------------------------------------------------------------


async def cleanup(settings: Settings) -> dict[str, int]:
    """Delete reports past their time, give up on jobs lost with a stopped worker, and remove
    files no job owns (left by a crash)."""
    now = clock.now()
    expired = await ReportJob.select(ReportJob.id, ReportJob.file_type).where(
        ReportJob.expires_at.is_not_null() & (ReportJob.expires_at < now)
    )
    failed_old = await ReportJob.select(ReportJob.id, ReportJob.file_type).where(
        (ReportJob.status == "failed") & (ReportJob.created_at < now - KEEP_FOR)
    )
    gone = [*expired, *failed_old]
    for job in gone:
        file_path(settings, job).unlink(missing_ok=True)
    if gone:
        await ReportJob.delete().where(ReportJob.id.is_in([j["id"] for j in gone]))
    lost = (
        await ReportJob.update(
            {
                ReportJob.status: "failed",
                ReportJob.error: _("The report was interrupted. Ask for it again."),
                ReportJob.finished_at: now,
            }
        )
        .where(
            ReportJob.status.is_in(["queued", "running"])
            & (ReportJob.created_at < now - STALE_AFTER)
        )
        .returning(ReportJob.id)
    )
    orphans = 0
    folder = reports_dir(settings)
    if folder.is_dir():
        known = {str(r["id"]) for r in await ReportJob.select(ReportJob.id)}
        cutoff = time.time() - STALE_AFTER.total_seconds()
        for entry in folder.iterdir():
            stem = entry.name.lstrip(".").split(".", 1)[0]
            if stem not in known and entry.stat().st_mtime < cutoff:
                if entry.is_dir():
                    import shutil

                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                orphans += 1
    summary = {"deleted": len(gone), "interrupted": len(lost), "orphans": orphans}
    if any(summary.values()):
        log.info("reports cleaned up", extra=summary)
    return summary
