"""Pages for changing a password with a code sent by e-mail: a forgotten one (anyone, by login
name) and the current one of a logged-in user who does not remember it."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.response import Template

from appliance.accounts import otp
from appliance.errors import RateLimited, ValidationFailed
from appliance.web.auth import ANYONE, SESSION_COOKIE, client_address
from appliance.web.forms import form_data, settings_of

PUBLIC = {"public": True}
LOGGED_IN = {"roles": ANYONE, "allow_password_change": True}
FORGOT = "accounts/password_forgot.html"
CODE = "accounts/password_code.html"


def _code_page(
    *,
    mode: str,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    sent: bool = False,
    status_code: int = 200,
) -> Template:
    # Passwords are never sent back to the browser; the login and the code are kept.
    kept = {k: v for k, v in (values or {}).items() if k in ("login", "code")}
    return Template(
        CODE,
        status_code=status_code,
        context={
            "mode": mode,
            "values": kept,
            "errors": errors or {},
            "sent": sent,
            "minutes": int(otp.CODE_LIFETIME.total_seconds() // 60),
        },
    )


def _refused(exc: ValidationFailed | RateLimited) -> tuple[dict[str, str], int]:
    errors = exc.errors if isinstance(exc, ValidationFailed) else {"": exc.message}
    return errors, exc.status_code


# -- forgotten password -------------------------------------------------------------------------


@get("/password/forgot", opt=PUBLIC)
async def forgot_page() -> Template:
    return Template(FORGOT, context={"values": {}, "errors": {}})


@post("/password/forgot", opt=PUBLIC, status_code=200)
async def forgot(request: Request) -> Template:
    data = await form_data(request)
    values = {"login": data.get("login", "")}
    try:
        await otp.request_code(
            settings_of(request), values["login"], address=client_address(request.scope)
        )
    except (ValidationFailed, RateLimited) as exc:
        errors, status = _refused(exc)
        return Template(FORGOT, status_code=status, context={"values": values, "errors": errors})
    return _code_page(mode="forgot", values=values, sent=True)


@get("/password/code", opt=PUBLIC)
async def code_page() -> Template:
    return _code_page(mode="forgot")


@post("/password/code", opt=PUBLIC, status_code=200)
async def reset(request: Request) -> Template:
    data = await form_data(request)
    try:
        await otp.reset_with_code(
            settings_of(request),
            login=data.get("login", ""),
            code=data.get("code", ""),
            new=data.get("new", ""),
            confirm=data.get("confirm", ""),
            address=client_address(request.scope),
        )
    except (ValidationFailed, RateLimited) as exc:
        errors, status = _refused(exc)
        return _code_page(mode="forgot", values=data, errors=errors, status_code=status)
    response = Template("accounts/password_reset_done.html")
    # Every session of the account ended, this browser's included if it had one.
    if request.cookies.get(SESSION_COOKIE):
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- logged in, current password forgotten ------------------------------------------------------


@get("/account/password/code", opt=LOGGED_IN)
async def account_code_page() -> Template:
    return _code_page(mode="account")


@post("/account/password/code/send", opt=LOGGED_IN, status_code=200)
async def account_send_code(request: Request) -> Template:
    try:
        await otp.request_code_for_user(
            settings_of(request), request.user.id, address=client_address(request.scope)
        )
    except (ValidationFailed, RateLimited) as exc:
        errors, status = _refused(exc)
        return _code_page(mode="account", errors=errors, status_code=status)
    return _code_page(mode="account", sent=True)


@post("/account/password/code", opt=LOGGED_IN, status_code=200)
async def account_change(request: Request) -> Template:
    data: dict[str, Any] = await form_data(request)
    identity = request.user
    try:
        await otp.change_with_code(
            settings_of(request),
            identity.id,
            code=data.get("code", ""),
            new=data.get("new", ""),
            confirm=data.get("confirm", ""),
            address=client_address(request.scope),
            keep_session=identity.session_id,
        )
    except (ValidationFailed, RateLimited) as exc:
        errors, status = _refused(exc)
        return _code_page(mode="account", values=data, errors=errors, status_code=status)
    home = {"customer": "/portal", "agent": "/customers"}.get(identity.role, "/")
    return Template("accounts/password_done.html", context={"home": home})


ROUTES = [
    forgot_page,
    forgot,
    code_page,
    reset,
    account_code_page,
    account_send_code,
    account_change,
]
