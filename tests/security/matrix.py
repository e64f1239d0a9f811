"""The authorization matrix, generated from the application's own route table.

Every route handler declares ``opt={"roles": (...)}`` or ``opt={"public": True}``; from that
alone each (route, actor) pair gets its expected answer:

* anonymous on a non-public route: pages send to ``/login?next=...`` (303), the API says 401;
* a signed-in actor whose role is not declared: 403;
* an actor whose role is declared: neither 401 nor 403 nor a 5xx (nor a bounce to the login);
* a customer naming the *other* customer's id (record, invoice, complaint): 403 or 404, none of
  the other customer's data in the answer, and (for writes) nothing changed in the database.

Path parameters are filled from :class:`tests.security.world.World`, by name. A route that
features add later is covered as soon as it is registered; a parameter name this module does
not know is reported by ``test_every_path_parameter_is_filled_from_the_seeded_office``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from litestar import Litestar

from appliance import clock
from tests.security.world import Account, World

KNOWN_ROLES = frozenset({"owner", "admin", "agent", "customer"})
# Who the matrix acts as: the key and the role it signs in with ("" for nobody).
ACTORS = {
    "anonymous": "",
    "a": "customer",
    "b": "customer",
    "agent": "agent",
    "admin": "admin",
    "owner": "owner",
}
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_PARAM = re.compile(r"\{(\w+):(\w+)\}")
_FALLBACK = {
    "uuid": "00000000-0000-4000-8000-000000000001",
    "int": "1",
    "str": "x",
    "path": "x",
    "date": "2026-01-01",
}


def _number(world: World, owner: Account, template: str) -> str:
    return owner.complaint["number"] if "/complaints" in template else owner.invoice


def _job(world: World, owner: Account, template: str) -> str:
    return world.report_id


def _mail_kind(world: World, owner: Account, template: str) -> str:
    from appliance.system.service import template_kinds

    return template_kinds()[0]


# Parameter name -> its value, given whose data the request is about and the route template.
Filler = Callable[[World, Account, str], str]
PARAMS: dict[str, Filler] = {
    "customer_id": lambda w, o, t: o.id,
    "crf": lambda w, o, t: o.customer["crf"],
    "number": _number,
    "invoice_number": lambda w, o, t: o.invoice,
    "payment_number": lambda w, o, t: o.invoice,
    "complaint_id": lambda w, o, t: str(o.complaint["id"]),
    "user_id": lambda w, o, t: str(o.user_id),
    "plan_id": lambda w, o, t: str(w.plan["id"]),
    "job_id": _job,
    "batch_id": lambda w, o, t: w.batch_id,
    "message_id": lambda w, o, t: w.message_id,
    "name": lambda w, o, t: "status-updater",
    "kind": _mail_kind,
    "code": lambda w, o, t: "en",
    "year": lambda w, o, t: str(clock.today(w.settings.tz).year),
    "month": lambda w, o, t: str(clock.today(w.settings.tz).month),
    # Sync review at central (a box answers 404 for these): no row of the seeded office.
    "office_code": lambda w, o, t: w.settings.office_code,
    "node_id": lambda w, o, t: _FALLBACK["uuid"],
    "conflict_id": lambda w, o, t: _FALLBACK["uuid"],
    "letter_id": lambda w, o, t: _FALLBACK["uuid"],
    "flag_id": lambda w, o, t: _FALLBACK["uuid"],
}
# Parameters that name one customer's data: a customer naming the other's must be refused.
OWNED = frozenset(
    {"customer_id", "crf", "number", "invoice_number", "payment_number", "complaint_id"}
)


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    opt: dict[str, Any]

    @property
    def is_api(self) -> bool:
        return self.template.startswith("/api/")

    @property
    def is_write(self) -> bool:
        return self.method in WRITE_METHODS

    @property
    def params(self) -> list[tuple[str, str]]:
        return _PARAM.findall(self.template)

    @property
    def owned(self) -> bool:
        """Whether the path names one customer's data."""
        return any(name in OWNED for name, _kind in self.params)

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self.opt.get("roles") or ())

    @property
    def public(self) -> bool:
        return self.opt.get("public") is True

    def allows(self, actor: str) -> bool:
        return self.public or ACTORS[actor] in self.roles

    def path(self, world: World, owner: Account) -> str:
        def fill(match: re.Match[str]) -> str:
            name, kind = match.group(1), match.group(2)
            filler = PARAMS.get(name)
            return filler(world, owner, self.template) if filler else _FALLBACK.get(kind, "x")

        return _PARAM.sub(fill, self.template)

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


def routes(app: Litestar) -> list[Route]:
    """Every application route and method, except Litestar's own (OPTIONS, HEAD, the OpenAPI
    pages) and the static files (tested for traversal on their own)."""
    found = []
    for route in app.routes:
        if route.path.startswith(("/static/", "/schema")):
            continue
        for handler in getattr(route, "route_handlers", []):
            for method in sorted(handler.http_methods):
                if method not in ("OPTIONS", "HEAD"):
                    found.append(Route(method, route.path, dict(handler.opt)))
    return found


def undeclared(app: Litestar) -> list[str]:
    """Routes that neither name roles (known ones, non-empty) nor say ``public=True``."""
    wrong = []
    for route in routes(app):
        roles = route.opt.get("roles")
        public = route.opt.get("public")
        if public is True and not roles:
            continue
        if (
            not public
            and isinstance(roles, tuple | list | frozenset | set)
            and roles
            and set(roles) <= KNOWN_ROLES
        ):
            continue
        wrong.append(f"{route}: opt={route.opt!r}")
    return wrong


def unknown_params(app: Litestar) -> set[str]:
    return {name for r in routes(app) for name, _kind in r.params if name not in PARAMS}


# Fields a form or JSON body of this app might carry, with values that would be accepted: a
# write that lacks its ownership check then really changes something the snapshot notices.
PLAUSIBLE_BODY = {
    "name": "Changed By Someone Else",
    "mobile": "11911112222",
    "email": "changed@example.com",
    "house": "99",
    "area": "Elsewhere",
    "message": "Written by another customer",
    "category": "no_signal",
    "text": "Written by another customer",
    "note": "Written by another customer",
    "resolution": "Written by another customer",
    "amount": "100",
    "mode": "online",
    "reference": "E99999999",
    "service": "all",
    "password": "new-password-123",
    "new_password": "new-password-123",
    "confirm": "new-password-123",
}
