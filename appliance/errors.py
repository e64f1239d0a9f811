"""Domain errors raised by service functions.

Services know nothing about HTTP; :mod:`appliance.web.errors` maps each class to a status code
and to a page or JSON body in one place. Messages are already translated (see
:mod:`appliance.i18n`) and written for the person who has to act on them.
"""

from __future__ import annotations

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
