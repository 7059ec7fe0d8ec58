"""Token introspection (RFC 7662) for resource servers that prefer it to JWT checks.

Confidential clients from the configuration (the operator's resource servers)
may introspect any token. Every other client, including confidential clients
that registered themselves, only sees the tokens issued to it, because open
registration must not open token scanning (RFC 7662 §4). Anything else is
``{"active": false}``.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from frontauth.appkeys import SERVICES
from frontauth.errors import InvalidRequest
from frontauth.params import form_params
from frontauth.responses import CLIENT_ID, json_response
from frontauth.services import Services
from frontauth.stores import ClientRecord
from frontauth.tokens import decode_access_token

INACTIVE = {"active": False}


async def active_access_claims(services: Services, token: str) -> dict[str, object] | None:
    """Claims of a valid, unrevoked access token of this server, else None."""
    claims = decode_access_token(services.keys, services.settings.issuer, token, services.settings.tokens.leeway)
    if claims is None:
        return None
    if await services.stores.access_token_revoked(claims["jti"]):
        return None
    family_id = claims.get("fid")
    if isinstance(family_id, str) and await services.stores.family_revoked(family_id):
        return None
    return claims


def _visible_to(client: ClientRecord, owner: str) -> bool:
    if client.confidential and not client.dynamic:
        return True
    return hmac.compare_digest(owner, client.client_id)


async def introspect(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    form, _ = await form_params(request)
    client = await services.clients.authenticate(form, request.headers.get("Authorization"))
    request[CLIENT_ID] = client.client_id
    token = form.get("token")
    if not token:
        raise InvalidRequest("token is required")

    claims = await active_access_claims(services, token)
    if claims is not None:
        if not _visible_to(client, str(claims["client_id"])):
            return json_response(INACTIVE)
        body = {key: claims[key] for key in ("scope", "client_id", "sub", "exp", "iat", "nbf", "aud", "iss", "jti") if key in claims}
        return json_response({"active": True, "token_type": "Bearer", **body})

    record = await services.stores.get_refresh(token)
    if record is None or record.rotated or not _visible_to(client, record.client_id):
        return json_response(INACTIVE)
    if await services.stores.family_revoked(record.family_id):
        return json_response(INACTIVE)
    return json_response({
        "active": True,
        "token_type": "refresh_token",
        "scope": record.scope,
        "client_id": record.client_id,
        "sub": record.subject,
        "exp": record.expires_at,
        "aud": record.resource,
        "iss": services.settings.issuer,
    })
