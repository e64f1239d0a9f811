"""Turning typed customer fields into clean values, with a message for each bad one."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import Any

from appliance.customers.tables import STATUSES
from appliance.i18n import gettext as _
from appliance.plans.tables import SERVICES

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# name -> (max length, required)
PROFILE_FIELDS: dict[str, tuple[int, bool]] = {
    "name": (200, True),
    "house": (120, True),
    "area": (120, True),
    "district": (120, False),
    "state": (120, False),
    "country": (120, False),
    "postal_code": (20, False),
    "id_doc_type": (40, False),
    "id_doc_number": (60, False),
}
CONTACT_FIELDS = ("mobile", "email", "house", "area", "district", "state", "country", "postal_code")
CONNECTION_FIELDS = ("plan", "device_id", "registered_on", "expires_on", "status")


def fold(text: str) -> str:
    """Lower-case ASCII form of ``text``: "João" -> "joao", for accent-blind search."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def normalise_mobile(raw: str) -> str:
    return "".join(c for c in raw if c.isdigit())


def parse_date(
    raw: Any, *, field: str, errors: dict[str, str], required: bool = False
) -> dt.date | None:
    if isinstance(raw, dt.date):
        return raw
    text = str(raw or "").strip()
    if not text:
        if required:
            errors[field] = _("Enter a date.")
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        errors[field] = _("Enter a date as YYYY-MM-DD.")
        return None


def clean_profile(
    data: dict[str, Any],
    *,
    today: dt.date,
    partial: bool = False,
    only: tuple[str, ...] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate customer fields. ``partial`` validates only the keys present; ``only`` limits
    which keys are accepted at all (a customer may edit contact fields only)."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}

    def wanted(name: str) -> bool:
        if only is not None and name not in only:
            return False
        return not partial or name in data

    for name, (limit, required) in PROFILE_FIELDS.items():
        if not wanted(name):
            continue
        value = " ".join(str(data.get(name) or "").split())
        if required and not value:
            errors[name] = _("This field is required.")
        elif len(value) > limit:
            errors[name] = _("Use at most %(n)s characters.", n=limit)
        values[name] = value
    if wanted("mobile"):
        mobile = normalise_mobile(str(data.get("mobile") or ""))
        if not mobile:
            errors["mobile"] = _("This field is required.")
        elif not 10 <= len(mobile) <= 15:
            errors["mobile"] = _("A mobile number has 10 to 15 digits, with the area code.")
        values["mobile"] = mobile
    if wanted("email"):
        email = str(data.get("email") or "").strip().lower()
        if email and (len(email) > 254 or not EMAIL_RE.match(email)):
            errors["email"] = _("Enter an e-mail address like name@example.com.")
        values["email"] = email
    if wanted("birth_date"):
        birth = parse_date(data.get("birth_date"), field="birth_date", errors=errors)
        if birth and not (today.replace(year=today.year - 130) <= birth <= today):
            errors["birth_date"] = _("The date of birth must be in the past.")
        values["birth_date"] = birth
    return values, errors


def clean_connection(
    service: str,
    data: dict[str, Any],
    *,
    plans: dict[str, dict[str, Any]],
    current_plan: Any = None,
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Validate the ``<service>_*`` fields. Returns None when no plan is chosen (no connection).

    A retired plan is refused unless the connection already has it.
    """
    assert service in SERVICES
    errors: dict[str, str] = {}
    prefix = f"{service}_"
    plan_id = str(data.get(prefix + "plan") or "").strip()
    if not plan_id:
        return None, errors
    plan = plans.get(plan_id)
    if plan is None or plan["service"] != service:
        errors[prefix + "plan"] = _("Choose a plan from the list.")
    elif plan["retired_at"] is not None and str(current_plan) != plan_id:
        errors[prefix + "plan"] = _("This plan is retired; choose a current one.")
    device = " ".join(str(data.get(prefix + "device_id") or "").split())
    if len(device) > 80:
        errors[prefix + "device_id"] = _("Use at most %(n)s characters.", n=80)
    registered = parse_date(
        data.get(prefix + "registered_on"),
        field=prefix + "registered_on",
        errors=errors,
        required=True,
    )
    expires = parse_date(
        data.get(prefix + "expires_on"), field=prefix + "expires_on", errors=errors
    )
    if registered and expires and expires < registered.replace(day=1) - dt.timedelta(days=1):
        errors[prefix + "expires_on"] = _("The expiry date cannot be before the registration.")
    status = str(data.get(prefix + "status") or "active")
    if status not in STATUSES:
        errors[prefix + "status"] = _("Choose active, inactive or suspended.")
    values = {
        "service": service,
        "plan": plan["id"] if plan else None,
        "device_id": device,
        "registered_on": registered,
        "expires_on": expires,
        "status": status,
    }
    return values, errors
