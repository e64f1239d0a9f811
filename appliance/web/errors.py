"""The one place where errors become HTTP answers: a JSON body under ``/api``, a page elsewhere."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any
from urllib.parse import quote

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from appliance.errors import (
    Busy,
    DomainError,
    StorageUnavailable,
    ValidationFailed,
    lock_timeout,
    storage_trouble,
)
from appliance.i18n import gettext as _
from appliance.sync.central import SyncRefused
from appliance.web.auth import PasswordChangeRequired, is_api

log = logging.getLogger(__name__)


def _titles() -> dict[int, str]:
    return {
        400: _("The request could not be understood"),
        401: _("Please log in"),
        403: _("You are not allowed to see this page"),
        404: _("Page not found"),
        405: _("This action is not allowed here"),
        409: _("This conflicts with what is already recorded"),
        422: _("Some values need correcting"),
        429: _("Too many attempts"),
        500: _("Something went wrong on the box"),
        503: _("The box cannot save anything right now"),
    }


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """What every API error answers: a code, a message a person can act on, and for invalid
    input the message per field."""

    error: str
    message: str
    errors: dict[str, str] | None = None


def api_error_responses() -> dict[int, ResponseSpec]:
    """The error answers any API operation can give (see the handlers below), for the OpenAPI
    document: a client generated from it then knows every status it may receive."""
    described = {
        400: "The request is malformed or has values of the wrong type",
        401: "No valid bearer token, or wrong credentials",
        403: "The token's role may not do this, or it is another customer's data",
        404: "There is no such record",
        409: "It conflicts with what is recorded",
        422: "Some values need correcting (messages per field)",
        429: "Too many attempts; wait and try again",
        503: "The box cannot save anything right now (disk full or read-only, or busy)",
    }
    return {
        status: ResponseSpec(data_container=ErrorBody, description=text, generate_examples=False)
        for status, text in described.items()
    }


def _answer(
    request: Request, status: int, code: str, message: str, errors: dict[str, str] | None = None
) -> Response[Any]:
    if is_api(request.url.path):
        body: dict[str, Any] = {"error": code, "message": message}
        if errors:
            body["errors"] = errors
        return Response(body, status_code=status, media_type=MediaType.JSON)
    # A path no route matches (404, 405) never passed the identity middleware, which runs per
    # route; the page layout asks who is signed in, so say "nobody" rather than fail with a 500.
    request.scope.setdefault("user", None)
    return Template(
        template_name="error.html",
        context={
            "status": status,
            "title": _titles().get(status, message),
            "message": message,
            "errors": errors or {},
        },
        status_code=status,
    )


def domain_error(request: Request, exc: DomainError) -> Response[Any]:
    errors = exc.errors if isinstance(exc, ValidationFailed) else None
    return _answer(request, exc.status_code, exc.code, exc.message, errors)


def not_authorized(request: Request, exc: NotAuthorizedException) -> Response[Any]:
    if is_api(request.url.path):
        return _answer(request, 401, "not_authenticated", _("A valid bearer token is needed."))
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect(f"/login?next={quote(target)}", status_code=303)


def permission_denied(request: Request, exc: PermissionDeniedException) -> Response[Any]:
    if isinstance(exc, PasswordChangeRequired):
        if is_api(request.url.path):
            return _answer(request, 403, "password_change_required", exc.detail)
        return Redirect("/account/password", status_code=303)
    message = exc.detail
    if "CSRF" in message:
        message = _("This form has expired. Go back, reload the page and try again.")
    elif message in ("route declares no roles", "Forbidden"):
        message = _("You are not allowed to do this.")
    return _answer(request, 403, "forbidden", message)


def not_found(request: Request, exc: NotFoundException) -> Response[Any]:
    return _answer(request, 404, "not_found", _("There is nothing at this address."))


def invalid_request(request: Request, exc: ValidationException) -> Response[Any]:
    errors = {}
    for item in exc.extra or []:
        if isinstance(item, dict):
            errors[str(item.get("key") or "")] = str(item.get("message") or "")
    return _answer(
        request, 400, "bad_request", _("Some values are missing or have the wrong type."), errors
    )


def http_error(request: Request, exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if status >= 500:
        log.error("HTTP %s on %s", status, request.url.path)
    return _answer(request, status, "error", _titles().get(status, exc.detail))


def storage_error(request: Request, exc: Exception) -> Response[Any]:
    """A database or file error: a clear 503 when the storage refused a write (disk full,
    read-only data folder, failing disk) or the write lock stayed taken past the busy timeout,
    otherwise an unexpected error."""
    if lock_timeout(exc):
        log.warning("write lock timeout on %s %s", request.method, request.url.path)
        response = domain_error(request, Busy())
        response.headers["Retry-After"] = "5"
        return response
    kind = storage_trouble(exc)
    if kind is None:
        return unexpected(request, exc)
    log.warning(
        "write refused on %s %s: storage %s (%s)", request.method, request.url.path, kind, exc
    )
    return domain_error(request, StorageUnavailable(kind))


def unexpected(request: Request, exc: Exception) -> Response[Any]:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return _answer(
        request,
        HTTP_500_INTERNAL_SERVER_ERROR,
        "internal_error",
        _("The problem was logged. Try again, or tell the office."),
    )


def sync_refused(request: Request, exc: SyncRefused) -> Response:
    """A box's sync request central refuses: the protocol's own body (what the box should do),
    e.g. ``{"error": "gap", "expected_seq": 42}``."""
    return Response(content=exc.body, status_code=exc.status, media_type=MediaType.JSON)


HANDLERS: dict[Any, Any] = {
    SyncRefused: sync_refused,
    DomainError: domain_error,
    NotAuthorizedException: not_authorized,
    PermissionDeniedException: permission_denied,
    NotFoundException: not_found,
    ValidationException: invalid_request,
    HTTPException: http_error,
    sqlite3.Error: storage_error,
    OSError: storage_error,
    Exception: unexpected,
}
