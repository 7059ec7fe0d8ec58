"""The token endpoint (RFC 6749 §3.2, OAuth 2.1 §3.2).

Steps: check_request (form body, single parameters), authenticate the client,
check_grant_type, drop the parameters the grant does not take, then the grant's
handler, and respond with ``Cache-Control: no-store``.
"""

from __future__ import annotations

import types

from aiohttp import web

from frontauth.appkeys import SERVICES
from frontauth.errors import InvalidRequest, UnauthorizedClient, UnsupportedGrantType
from frontauth.grants import authorization_code, refresh_token
from frontauth.metrics import GRANT_TYPE
from frontauth.params import form_params
from frontauth.responses import CLIENT_ID, json_response

GRANTS: dict[str, types.ModuleType] = {
    authorization_code.GRANT_TYPE: authorization_code,
    refresh_token.GRANT_TYPE: refresh_token,
}


def check_grant_type(form: dict[str, str]) -> types.ModuleType:
    grant_type = form.get("grant_type")
    if not grant_type:
        raise InvalidRequest("grant_type is required")
    grant = GRANTS.get(grant_type)
    if grant is None:
        # OAuth 2.1 removed the implicit and password grants; frontauth offers only these two.
        raise UnsupportedGrantType("supported grant types are authorization_code and refresh_token")
    return grant


async def token(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    form, _ = await form_params(request)
    grant = check_grant_type(form)
    request[GRANT_TYPE] = grant.GRANT_TYPE
    client = await services.clients.authenticate(form, request.headers.get("Authorization"))
    request[CLIENT_ID] = client.client_id
    if grant.GRANT_TYPE not in client.grant_types:
        raise UnauthorizedClient(f"the client is not registered for the {grant.GRANT_TYPE} grant")
    accepted = {name: value for name, value in form.items() if name in grant.PARAMETERS}
    body = await grant.handle(services, client, accepted)
    return json_response(body)
