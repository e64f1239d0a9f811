"""Domain errors raised by service functions.

Services know nothing about HTTP; :mod:`appliance.web.errors` maps each class to a status code
and to a page or JSON body in one place. Messages are already translated (see
:mod:`appliance.i18n`) and written for the person who has to act on them.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping


class DomainError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class PermissionDenied(DomainError):
    status_code = 403
    code = "forbidden"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class AuthenticationFailed(DomainError):
    status_code = 401
    code = "authentication_failed"


class RateLimited(DomainError):
    status_code = 429
    code = "rate_limited"


class ValidationFailed(DomainError):
    """Input that cannot be accepted, with a message per field (``""`` for the whole form)."""

    status_code = 422
    code = "invalid"

    def __init__(self, errors: Mapping[str, str], message: str | None = None) -> None:
        from appliance.i18n import gettext as _

        self.errors = dict(errors)
        super().__init__(message or _("Please correct the highlighted fields."))


class NeedsConfirmation(ValidationFailed):
    """Input that is valid but looks like a mistake (a duplicate e-mail, say): ask first."""

    code = "needs_confirmation"


# What SQLite (and the OS) say when the data folder cannot take a write: the disk is full, the
# folder or file is read-only, or the storage itself fails. Matched on the message because
# sqlite3 raises them all as OperationalError (or DatabaseError) without a usable code.
_STORAGE_SIGNS = {
    "database or disk is full": "full",
    "no space left on device": "full",
    "attempt to write a readonly database": "read_only",
    "read-only file system": "read_only",
    "readonly database": "read_only",
    "disk i/o error": "io_error",
}


def _chain(exc: BaseException | None, depth: int = 5) -> list[BaseException]:
    """``exc`` and what caused it, nearest first (a driver error wrapped by the ORM)."""
    found: list[BaseException] = []
    while exc is not None and len(found) < depth:
        found.append(exc)
        exc = exc.__cause__ or exc.__context__
    return found


def storage_trouble(exc: BaseException) -> str | None:
    """``"full"``, ``"read_only"`` or ``"io_error"`` when ``exc`` (or what caused it) means the
    storage refused a write; None for anything else (a lock timeout is not storage trouble)."""
    for link in _chain(exc):
        text = str(link).lower()
        for sign, kind in _STORAGE_SIGNS.items():
            if sign in text:
                return kind
        if isinstance(link, OSError) and link.errno is not None:
            if link.errno in (errno.ENOSPC, errno.EDQUOT):
                return "full"
            if link.errno == errno.EROFS:
                return "read_only"
    return None


def lock_timeout(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) is SQLite giving up waiting for the write lock:
    another write held it for longer than the busy timeout. Nothing was written."""
    return any("database is locked" in str(link).lower() for link in _chain(exc))


class Busy(DomainError):
    """A write waited too long for the database (a long job held it): nothing was changed, and
    trying again in a moment works."""

    status_code = 503
    code = "busy"

    def __init__(self) -> None:
        from appliance.i18n import gettext as _

        super().__init__(
            _(
                "The box is busy with a long task and could not save this in time. Nothing was "
                "changed. Please try again in a moment."
            )
        )


class StorageUnavailable(DomainError):
    """The box cannot store anything right now (disk full, read-only data folder, failing
    storage). Reads keep working; writes are refused until the storage is back."""

    status_code = 503
    code = "storage_unavailable"

    def __init__(self, kind: str) -> None:
        from appliance.i18n import gettext as _

        self.kind = kind
        messages = {
            "full": _(
                "The box's disk is full, so nothing new can be saved. Nothing was changed. "
                "You can still look things up; free some space (or ask the office's technician) "
                "and try again."
            ),
            "read_only": _(
                "The box's data folder is read-only, so nothing new can be saved. Nothing was "
                "changed. You can still look things up; ask the office's technician to check "
                "the storage, then try again."
            ),
        }
        super().__init__(
            messages.get(kind)
            or _(
                "The box's storage is failing, so nothing new can be saved. Nothing was "
                "changed. Ask the office's technician to check the disk, then try again."
            )
        )
