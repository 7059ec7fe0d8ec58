"""Token revocation (RFC 7009).

Steps: check_request (form body), authenticate the client, find the token
(refresh token by digest, access token by signature), check that it belongs
to the client, revoke. The response is 200 whether or not the token was known
(RFC 7009 §2.2), so the endpoint cannot be used to probe for valid tokens.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from frontauth.appkeys import SERVICES
from frontauth.errors import InvalidRequest
from frontauth.params import form_params
from frontauth.responses import CLIENT_ID, NO_STORE
from frontauth.services import Services
from frontauth.stores import ClientRecord
from frontauth.tokens import decode_access_token


async def revoke_token(services: Services, client: ClientRecord, token: str) -> bool:
    """Revoke a refresh or access token of this client; return True if one was revoked."""
    record = await services.stores.get_refresh(token)
    if record is not None:
        if not hmac.compare_digest(record.client_id, client.client_id):
            return False
        # RFC 7009 §2.1: revoking a refresh token also revokes the grant's access tokens.
        await services.stores.revoke_family(record.family_id, record.client_id, record.subject, services.settings.refresh_ttl)
        await services.stores.delete_refresh(token)
        return True
    claims = decode_access_token(services.keys, services.settings.issuer, token, services.settings.tokens.leeway)
    if claims is None or not hmac.compare_digest(claims["client_id"], client.client_id):
        return False
    await services.stores.revoke_access_token(claims["jti"], claims["exp"] - services.clock() + services.settings.tokens.leeway)
    return True


async def revoke(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    form, _ = await form_params(request)
    client = await services.clients.authenticate(form, request.headers.get("Authorization"))
    request[CLIENT_ID] = client.client_id
    token = form.get("token")
    if not token:
        raise InvalidRequest("token is required")
    # token_type_hint only speeds up the lookup (RFC 7009 §2.1); both kinds are tried.
    await revoke_token(services, client, token)
    return web.Response(status=200, headers=NO_STORE)
