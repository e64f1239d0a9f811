"""Every route of the application, with its path parameters filled in, for tests that must
hold for all routes (CSRF, role declarations, the forced password change) including the ones
features add later."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from litestar import Litestar

_PARAM = re.compile(r"\{(\w+):(\w+)\}")
_SAMPLE = {"uuid": str(uuid.UUID(int=1)), "int": "1", "str": "x", "path": "x", "date": "2026-01-01"}


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    path: str
    opt: dict[str, Any]

    @property
    def is_api(self) -> bool:
        return self.template.startswith("/api/")


def routes(app: Litestar) -> list[Route]:
    """Application routes (not Litestar's OPTIONS, static files or the OpenAPI pages)."""
    found = []
    for route in app.routes:
        template = route.path
        if template.startswith(("/static", "/schema")):
            continue
        path = _PARAM.sub(lambda m: _SAMPLE.get(m.group(2), "x"), template)
        for handler in getattr(route, "route_handlers", []):
            for method in handler.http_methods:
                if method in ("OPTIONS", "HEAD"):
                    continue
                found.append(Route(method, template, path, dict(handler.opt)))
    return found


def form_routes(app: Litestar) -> list[Route]:
    """Routes a browser form posts to (everything that changes state outside the API)."""
    return [r for r in routes(app) if r.method not in ("GET", "HEAD") and not r.is_api]
