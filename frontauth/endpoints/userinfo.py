"""The userinfo endpoint: the subject (`sub`) of the user an access token was issued for."""

from __future__ import annotations

from aiohttp import web

from frontauth.appkeys import SERVICES
from frontauth.endpoints.introspect import active_access_claims
from frontauth.errors import InvalidToken
from frontauth.responses import CLIENT_ID, json_response


def bearer_token(request: web.Request) -> str:
    """Return the token of an ``Authorization: Bearer`` header (RFC 6750 §2.1)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("a bearer access token is required")
    return token.strip()


async def userinfo(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    claims = await active_access_claims(services, bearer_token(request))
    if claims is None:
        raise InvalidToken("the access token is invalid, expired or revoked")
    request[CLIENT_ID] = claims["client_id"]
    return json_response({"sub": claims["sub"]})
