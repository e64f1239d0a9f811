"""A bare public page: readiness probe for tests and scripts, and the benchmark's yardstick."""

from __future__ import annotations

from litestar import MediaType, get


@get("/healthz", opt={"public": True}, media_type=MediaType.TEXT, include_in_schema=False)
async def healthz() -> str:
    """Answer "ok" without touching the database or a session."""
    return "ok"


ROUTES = [healthz]
