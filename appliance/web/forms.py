"""Small helpers shared by the HTML handlers."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from litestar import Request
from litestar.response import Redirect

from appliance.settings import Settings


async def form_data(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The submitted form as a plain dict (last value wins), without the CSRF token."""
    form = await request.form()
    return {k: v for k, v in form.items() if k != "_csrf_token" and isinstance(v, str)}


def settings_of(request: Request[Any, Any, Any]) -> Settings:
    return request.app.state.settings


def safe_next(target: str | None, default: str = "/") -> str:
    """A local path to go to after login; anything pointing elsewhere falls back."""
    if not target:
        return default
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    # Browsers read a backslash as "/" and drop tabs and newlines, so "/" + backslash +
    # "evil.example", or "/", a tab and "/evil.example", would leave the box like "//" does.
    if "\\" in target or any(ord(ch) < 32 or ord(ch) == 127 for ch in target):
        return default
    return target


def see_other(path: str) -> Redirect:
    return Redirect(path, status_code=303)


def page_number(value: Any) -> int:
    try:
        return max(1, min(int(value), 100_000))
    except (TypeError, ValueError):
        return 1
