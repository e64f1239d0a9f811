"""API: bearer tokens for integrations."""

from __future__ import annotations

import msgspec
from litestar import Request, post
from litestar.params import JSONBody

from appliance.accounts import service as accounts
from appliance.web.auth import client_address, policy_for
from appliance.web.forms import settings_of


class TokenRequest(msgspec.Struct):
    username: str
    password: str


class TokenResponse(msgspec.Struct):
    access_token: str
    token_type: str
    expires_in: int
    role: str


@post(
    "/auth/token",
    opt={"public": True},
    operation_id="createToken",
    tags=["auth"],
    summary="Exchange a username (or CRF / e-mail) and password for a bearer token",
)
async def create_token(data: JSONBody[TokenRequest], request: Request) -> TokenResponse:
    address = client_address(request.scope)
    user = await accounts.authenticate(data.username, data.password, address=address)
    token = await accounts.start_session(
        user["id"], policy=policy_for(settings_of(request)), address=address, kind="api"
    )
    return TokenResponse(
        access_token=token,
        token_type="bearer",  # noqa: S106  (the scheme, not a secret)
        expires_in=int(accounts.API_TOKEN_LIFETIME.total_seconds()),
        role=user["role"],
    )


ROUTES = [create_token]
