"""Customers and their connections: register, edit, archive, restore, find."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from piccolo.columns.combination import WhereRaw

from appliance import clock
from appliance.accounts import service as accounts
from appliance.audit import service as audit_log
from appliance.customers.tables import Connection, CrfCounter, Customer
from appliance.customers.validation import (
    CONTACT_FIELDS,
    clean_connection,
    clean_profile,
    fold,
    normalise_mobile,
)
from appliance.dashboard import cache as dashboard_cache
from appliance.db import write_transaction
from appliance.errors import NeedsConfirmation, NotFound, PermissionDenied, ValidationFailed
from appliance.i18n import gettext as _
from appliance.mail import service as mail
from appliance.plans.tables import SERVICES, Plan
from appliance.settings import Settings

log = logging.getLogger(__name__)

PAGE_SIZE = 25


@dataclass
class Page:
    rows: list[dict[str, Any]]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _search_text(crf: str, name: str, mobile: str) -> str:
    return " ".join((fold(crf), fold(name), mobile))


def _parse_id(value: Any) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError as exc:
        raise NotFound(_("This customer does not exist.")) from exc


async def _plans_by_id() -> dict[str, dict[str, Any]]:
    return {str(p["id"]): p for p in await Plan.select()}


async def _next_crf(office_code: str) -> str:
    """Take the next serial of the office; runs inside the caller's write transaction."""
    rows = (
        await CrfCounter.update({CrfCounter.last: CrfCounter.last + 1})
        .where(CrfCounter.office_code == office_code)
        .returning(CrfCounter.last)
    )
    if not rows:
        await CrfCounter(office_code=office_code, last=1).save()
        serial = 1
    else:
        serial = rows[0]["last"]
    return f"{office_code}{serial:06d}"


async def _sync_billing(customer_id: Any, settings: Settings) -> None:
    """Give new connections their months at once and keep each expiry in step with billing."""
    from appliance.billing.charges import sync_customer

    await sync_customer(customer_id, settings=settings)


async def _duplicates(values: dict[str, Any], *, exclude: Any = None) -> dict[str, str]:
    warnings = {}
    for field in ("email", "mobile"):
        value = values.get(field)
        if not value:
            continue
        query = Customer.select(Customer.crf).where(
            (getattr(Customer, field) == value) & Customer.archived_at.is_null()
        )
        if exclude is not None:
            query = query.where(Customer.id != exclude)
        rows = await query.limit(1)
        if rows:
            warnings[field] = _(
                "Customer %(crf)s already has this %(what)s. Save again to confirm.",
                crf=rows[0]["crf"],
                what=_("e-mail") if field == "email" else _("mobile"),
            )
    return warnings


def _connection_values(
    data: dict[str, Any],
    plans: dict[str, dict[str, Any]],
    errors: dict[str, str],
    current: dict[str, Any] | None = None,
):
    result = {}
    for service in SERVICES:
        current_plan = (current or {}).get(service, {}).get("plan")
        values, problems = clean_connection(service, data, plans=plans, current_plan=current_plan)
        errors.update(problems)
        result[service] = values
    return result


async def create_customer(
    data: dict[str, Any],
    *,
    actor: Any,
    settings: Settings,
    confirm_duplicates: bool = False,
    office: str | None = None,
) -> dict[str, Any]:
    """Register a customer with their connections and login; queue the welcome e-mail.

    ``office`` is for central, where a customer must be given to one office (the capture
    triggers would otherwise leave it officeless, and every box would receive it); on a box
    the triggers give the box's own office."""
    today = clock.today(settings.tz)
    values, errors = clean_profile(data, today=today)
    plans = await _plans_by_id()
    connections = _connection_values(data, plans, errors)
    if errors:
        raise ValidationFailed(errors)
    async with write_transaction():
        if not confirm_duplicates and (warnings := await _duplicates(values)):
            raise NeedsConfirmation(
                warnings, _("Check the highlighted fields, then save again to confirm.")
            )
        crf = await _next_crf(settings.office_code)
        customer = Customer(
            crf=crf, search_text=_search_text(crf, values["name"], values["mobile"]), **values
        )
        await customer.save()
        if office:
            await Customer.raw(
                "UPDATE customers SET office = {} WHERE id = {}", office, customer.id
            )
        for conn in connections.values():
            if conn:
                await Connection(customer=customer.id, **conn).save()
        await _sync_billing(customer.id, settings)
        password = await accounts.create_customer_login(customer.id)
        await audit_log.record(
            actor=actor,
            entity="customer",
            entity_id=customer.id,
            action="create",
            changes={**values, "crf": crf},
        )
        if values["email"]:
            await mail.queue(
                settings=settings,
                kind="credentials",
                to=values["email"],
                context={
                    "name": values["name"],
                    "crf": crf,
                    "email": values["email"],
                    "password": password,
                },
            )
    dashboard_cache.invalidate()
    log.info("customer created", extra={"customer_id": str(customer.id)})
    if values["email"]:
        mail.kick()
    return await get_customer(customer.id)


async def get_customer(customer_id: Any, *, include_archived: bool = True) -> dict[str, Any]:
    cid = _parse_id(customer_id)
    rows = await Customer.select().where(Customer.id == cid)
    if not rows or (rows[0]["archived_at"] and not include_archived):
        raise NotFound(_("This customer does not exist."))
    customer = rows[0]
    conns = await Connection.select(
        *Connection.all_columns(),
        Connection.plan.name.as_alias("plan_name"),
        Connection.plan.monthly_price.as_alias("plan_price"),
        Connection.plan.retired_at.as_alias("plan_retired_at"),
    ).where(Connection.customer == cid)
    customer["connections"] = {c["service"]: c for c in conns}
    return customer


def ensure_can_see(identity: Any, customer_id: Any) -> None:
    """A customer may only reach their own record; staff may reach any."""
    if identity.role == "customer" and str(identity.customer_id) != str(customer_id):
        raise PermissionDenied(_("You can only see your own account."))


async def update_customer(
    customer_id: Any,
    data: dict[str, Any],
    *,
    actor: Any,
    settings: Settings,
    confirm_duplicates: bool = False,
) -> dict[str, Any]:
    """Edit a customer. Staff edit everything; a customer edits only contact fields."""
    by_customer = getattr(actor, "role", None) == "customer"
    if by_customer:
        ensure_can_see(actor, customer_id)
    today = clock.today(settings.tz)
    before = await get_customer(customer_id)
    if before["archived_at"]:
        raise ValidationFailed({"": _("Restore this customer before editing.")})
    values, errors = clean_profile(
        data, today=today, partial=by_customer, only=CONTACT_FIELDS if by_customer else None
    )
    connections = {}
    if not by_customer:
        plans = await _plans_by_id()
        connections = _connection_values(data, plans, errors, current=before["connections"])
    if errors:
        raise ValidationFailed(errors)
    cid = before["id"]
    async with write_transaction():
        if not confirm_duplicates and (warnings := await _duplicates(values, exclude=cid)):
            raise NeedsConfirmation(
                warnings, _("Check the highlighted fields, then save again to confirm.")
            )
        changes = audit_log.diff(before, values)
        if changes:
            name = values.get("name", before["name"])
            mobile = values.get("mobile", before["mobile"])
            await Customer.update(
                {
                    **values,
                    "search_text": _search_text(before["crf"], name, mobile),
                    "updated_at": clock.now(),
                }
            ).where(Customer.id == cid)
        for service in SERVICES if not by_customer else ():
            old = before["connections"].get(service)
            new = connections[service]
            if new is None and old is not None:
                # A connection is never deleted (its charges and payments refer to it);
                # choosing no plan stops the service.
                if old["status"] != "suspended":
                    await Connection.update(
                        {Connection.status: "suspended", Connection.updated_at: clock.now()}
                    ).where(Connection.id == old["id"])
                    changes[f"{service}.status"] = [old["status"], "suspended"]
            elif new is not None and old is None:
                await Connection(customer=cid, **new).save()
                changes[f"{service}"] = [None, "added"]
            elif new is not None and old is not None:
                conn_changes = audit_log.diff(old, new)
                if conn_changes:
                    await Connection.update({**new, "updated_at": clock.now()}).where(
                        Connection.id == old["id"]
                    )
                    changes.update({f"{service}.{k}": v for k, v in conn_changes.items()})
        if not by_customer:
            await _sync_billing(cid, settings)
        if changes:
            await audit_log.record(
                actor=actor, entity="customer", entity_id=cid, action="update", changes=changes
            )
    dashboard_cache.invalidate()
    return await get_customer(cid)


async def archive_customer(customer_id: Any, *, actor: Any) -> None:
    """Remove a customer from lists and counts and disable the login; keep every record."""
    customer = await get_customer(customer_id)
    if customer["archived_at"]:
        return
    async with write_transaction():
        await Customer.update({Customer.archived_at: clock.now()}).where(
            Customer.id == customer["id"]
        )
        await accounts.set_customer_login_active(customer["id"], False)
        await audit_log.record(
            actor=actor, entity="customer", entity_id=customer["id"], action="archive"
        )
    dashboard_cache.invalidate()
    log.info("customer archived", extra={"customer_id": str(customer["id"])})


async def restore_customer(customer_id: Any, *, actor: Any) -> None:
    customer = await get_customer(customer_id)
    if not customer["archived_at"]:
        return
    async with write_transaction():
        await Customer.update({Customer.archived_at: None}).where(Customer.id == customer["id"])
        await accounts.set_customer_login_active(customer["id"], True)
        await audit_log.record(
            actor=actor, entity="customer", entity_id=customer["id"], action="restore"
        )
    dashboard_cache.invalidate()


async def search_customers(
    query: str = "",
    *,
    page: int = 1,
    per_page: int = PAGE_SIZE,
    archived: bool = False,
    office: str = "",
) -> Page:
    """Customers whose CRF, name or mobile contains ``query`` (accent- and case-blind), of one
    office when ``office`` is given (central holds every office's)."""
    page = max(1, page)
    per_page = min(max(1, per_page), 200)
    where = Customer.archived_at.is_not_null() if archived else Customer.archived_at.is_null()
    if office:
        where = where & WhereRaw('"customers"."office" = {}', office)
    for term in fold(query).split()[:5]:
        digits = normalise_mobile(term)
        # A term like "(11)" or "9123-45" is matched on its digits, as mobiles are stored bare.
        # A term with letters (a CRF such as "TS000001", a name) is matched as typed: its
        # digits alone would also find every mobile that contains them.
        has_letters = any(ch.isalpha() for ch in term)
        needle = digits if digits and len(digits) >= len(term) - 4 and not has_letters else term
        pattern = "%" + needle.replace("\\", "").replace("%", "").replace("_", "") + "%"
        where = where & Customer.search_text.like(pattern)
    total = await Customer.count().where(where)
    # The page's ids come from the narrow customers_search index (a scan of it is about half
    # the cost of scanning the table); only the page's rows are then read in full.
    page_ids = (
        Customer.select(Customer.id)
        .where(where)
        .order_by(Customer.name, Customer.id)
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    rows = (
        await Customer.select(
            Customer.id,
            Customer.crf,
            Customer.name,
            Customer.mobile,
            Customer.email,
            Customer.house,
            Customer.area,
            Customer.archived_at,
        )
        .where(Customer.id.is_in(page_ids))
        .order_by(Customer.name, Customer.id)
    )
    if rows:
        conns = await Connection.select(
            Connection.customer, Connection.service, Connection.status, Connection.expires_on
        ).where(Connection.customer.is_in([r["id"] for r in rows]))
        by_customer: dict[Any, dict[str, Any]] = {}
        for c in conns:
            by_customer.setdefault(c["customer"], {})[c["service"]] = c
        for r in rows:
            r["connections"] = by_customer.get(r["id"], {})
    return Page(rows=rows, total=total, page=page, per_page=per_page)


def _of_office(office: str) -> tuple[str, list[Any]]:
    """SQL text and arguments limiting connections to one office's customers ('' for all)."""
    if not office:
        return "", []
    return " AND customer IN (SELECT id FROM customers WHERE office = {})", [office]


async def connection_counts(*, office: str = "") -> dict[str, dict[str, int]]:
    """{service: {status: count}} over customers that are not archived (of one office)."""
    counts = {s: {"active": 0, "inactive": 0, "suspended": 0} for s in SERVICES}
    # Counted from the connections_counts index, less the few archived customers found through
    # the partial index customers_archived (a join with every customer cost ~20 ms at 20,000).
    scope, args = _of_office(office)
    rows = await Connection.raw(
        "SELECT service, status, COUNT(*) AS n FROM connections "  # noqa: S608
        "WHERE customer NOT IN (SELECT id FROM customers WHERE archived_at IS NOT NULL)"
        + scope
        + " GROUP BY service, status",
        *args,
    )
    for r in rows:
        counts.setdefault(r["service"], {})[r["status"]] = r["n"]
    return counts


async def renewals_due(day: Any, *, office: str = "") -> dict[str, int]:
    scope, args = _of_office(office)
    rows = await Connection.raw(
        "SELECT service, COUNT(*) AS n FROM connections WHERE expires_on = {} "  # noqa: S608
        "AND customer NOT IN (SELECT id FROM customers WHERE archived_at IS NOT NULL)"
        + scope
        + " GROUP BY service",
        day,
        *args,
    )
    return {r["service"]: r["n"] for r in rows}
