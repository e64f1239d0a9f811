"""Pages for logging in and out, changing a password, choosing a language, managing staff."""

from __future__ import annotations

from uuid import UUID

from litestar import Request, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from appliance.accounts import service as accounts
from appliance.errors import AuthenticationFailed, RateLimited, ValidationFailed
from appliance.i18n import SUPPORTED
from appliance.web.auth import (
    ADMIN,
    ANYONE,
    LANG_COOKIE,
    SESSION_COOKIE,
    client_address,
    policy_for,
)
from appliance.web.forms import form_data, safe_next, see_other, settings_of

PUBLIC = {"public": True}


def _home_for(role: str) -> str:
    return {"customer": "/portal", "agent": "/customers"}.get(role, "/")


@get("/login", opt=PUBLIC, name="login")
async def login_page(request: Request, next: FromQuery[str | None] = None) -> Template | Redirect:
    if request.user:
        return see_other(_home_for(request.user.role))
    return Template(
        "accounts/login.html", context={"next": safe_next(next, ""), "values": {}, "errors": {}}
    )


@post("/login", opt=PUBLIC, status_code=200)
async def login(request: Request) -> Template | Redirect:
    data = await form_data(request)
    settings = settings_of(request)
    login_name = data.get("login", "")
    try:
        user = await accounts.authenticate(
            login_name, data.get("password", ""), address=client_address(request.scope)
        )
    except (AuthenticationFailed, RateLimited) as exc:
        return Template(
            "accounts/login.html",
            status_code=exc.status_code,
            context={
                "next": safe_next(data.get("next"), ""),
                "values": {"login": login_name},
                "errors": {"": exc.message},
            },
        )
    # A fresh secret at every login: a session id planted before login is worthless after it.
    if old := request.cookies.get(SESSION_COOKIE):
        await accounts.end_session(old)
    token = await accounts.start_session(
        user["id"], policy=policy_for(settings), address=client_address(request.scope)
    )
    target = safe_next(data.get("next"), _home_for(user["role"]))
    if user["must_change_password"]:
        target = "/account/password"
    response = see_other(target)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
    )
    return response


@post("/logout", opt={"roles": ANYONE, "allow_password_change": True})
async def logout(request: Request) -> Redirect:
    if token := request.cookies.get(SESSION_COOKIE):
        await accounts.end_session(token)
    response = see_other("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@get("/account/password", opt={"roles": ANYONE, "allow_password_change": True})
async def password_page(request: Request) -> Template:
    return Template(
        "accounts/password.html",
        context={"errors": {}, "forced": request.user.must_change_password},
    )


@post("/account/password", opt={"roles": ANYONE, "allow_password_change": True}, status_code=200)
async def change_password(request: Request) -> Template | Redirect:
    data = await form_data(request)
    identity = request.user
    try:
        await accounts.change_password(
            identity.id,
            current=data.get("current", ""),
            new=data.get("new", ""),
            confirm=data.get("confirm", ""),
            keep_session=identity.session_id,
        )
    except ValidationFailed as exc:
        return Template(
            "accounts/password.html",
            status_code=422,
            context={"errors": exc.errors, "forced": identity.must_change_password},
        )
    return Template("accounts/password_done.html", context={"home": _home_for(identity.role)})


@get("/lang/{code:str}", opt=PUBLIC)
async def choose_language(
    request: Request, code: FromPath[str], next: FromQuery[str | None] = None
) -> Redirect:
    response = see_other(safe_next(next))
    if code in SUPPORTED:
        response.set_cookie(
            LANG_COOKIE,
            code,
            samesite="lax",
            httponly=True,
            secure=settings_of(request).secure_cookies,
            max_age=365 * 86400,
            path="/",
        )
    return response


@get("/staff", opt={"roles": ADMIN})
async def staff_page() -> Template:
    return Template(
        "accounts/staff.html",
        context={"staff": await accounts.list_staff(), "values": {}, "errors": {}},
    )


@post("/staff", opt={"roles": ADMIN}, status_code=200)
async def create_staff(request: Request) -> Template | Redirect:
    data = await form_data(request)
    role = data.get("role", "")
    # Only an owner may create another owner.
    if role == "owner" and request.user.role != "owner":
        role = "invalid"
    try:
        await accounts.create_staff(
            username=data.get("username", ""),
            role=role,
            password=data.get("password", ""),
            must_change_password=True,
        )
    except ValidationFailed as exc:
        return Template(
            "accounts/staff.html",
            status_code=422,
            context={"staff": await accounts.list_staff(), "values": data, "errors": exc.errors},
        )
    return see_other("/staff")


@post("/staff/{user_id:uuid}/unlock", opt={"roles": ADMIN})
async def unlock_user(user_id: FromPath[UUID]) -> Redirect:
    await accounts.unlock(user_id)
    return see_other("/staff")


ROUTES = [
    login_page,
    login,
    logout,
    password_page,
    change_password,
    choose_language,
    staff_page,
    create_staff,
    unlock_user,
]
