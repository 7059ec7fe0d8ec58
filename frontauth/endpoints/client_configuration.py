"""The client configuration endpoint (RFC 7592): read, update and delete a registration.

Steps: load_client authenticates the request with the registration access
token issued at registration (compared as a digest, in constant time), then
``read`` returns the client information, ``update`` replaces the metadata, and
``delete`` removes the client. Configured clients have no registration access
token, so they cannot be managed here.

Deviation: RFC 7592 §3 lists ``registration_access_token`` in every client
information response. frontauth stores only its digest, so read and update
responses leave it out, and the token from registration stays valid.
"""

from __future__ import annotations

import hmac

import attrs
from aiohttp import web

from frontauth.appkeys import SERVICES
from frontauth.endpoints.register import _read_json, check_metadata, client_information
from frontauth.errors import InvalidClientMetadata, InvalidToken
from frontauth.responses import CLIENT_ID, json_response
from frontauth.services import Services
from frontauth.stores import ClientRecord
from frontauth.tokens import digest
from frontauth.users import verify_password

PATH = "/oauth/register/{client_id}"
# Metadata an update cannot change: identity, credentials and bookkeeping.
KEPT_FIELDS = ("client_id", "client_secret_hash", "client_id_issued_at", "registration_token_hash", "used", "dynamic")


async def load_client(request: web.Request) -> tuple[Services, ClientRecord]:
    """Return the client named in the path, once the bearer token proves the caller registered it.

    Raises:
        InvalidToken: no bearer token, an unknown client, or a token that does
            not match. RFC 7592 §2 gives an unknown client 401 as well, so the
            answer does not reveal which client_ids exist.
    """
    services = request.app[SERVICES]
    client_id = request.match_info["client_id"]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("the registration access token is missing")
    client = await services.clients.find(client_id)
    expected = client.registration_token_hash if client is not None else None
    if expected is None or not hmac.compare_digest(digest(token.strip()), expected):
        raise InvalidToken("the registration access token is invalid", detail=f"client_id {client_id[:80]}")
    request[CLIENT_ID] = client_id
    return services, client  # type: ignore[return-value]  # expected is None when client is None


async def read(request: web.Request) -> web.Response:
    services, client = await load_client(request)
    return json_response(client_information(services, client))


def check_update(client: ClientRecord, metadata: dict[str, object]) -> dict[str, object]:
    """RFC 7592 §2.2: the body names the same client and may not change its credentials."""
    if metadata.get("client_id") != client.client_id:
        raise InvalidClientMetadata("client_id in the body must equal the client being updated")
    secret = metadata.get("client_secret")
    if secret is not None and (
        not isinstance(secret, str) or client.client_secret_hash is None or not verify_password(secret, client.client_secret_hash)
    ):
        raise InvalidClientMetadata("client_secret does not match the registered secret")
    method = metadata.setdefault("token_endpoint_auth_method", client.token_endpoint_auth_method)
    if method != client.token_endpoint_auth_method:
        raise InvalidClientMetadata("token_endpoint_auth_method cannot be changed; register a new client")
    return metadata


async def update(request: web.Request) -> web.Response:
    services, client = await load_client(request)
    metadata = check_update(client, await _read_json(request))
    replacement = check_metadata(services, metadata)
    replacement = attrs.evolve(replacement, **{name: getattr(client, name) for name in KEPT_FIELDS})
    if not await services.stores.replace_client(replacement):
        raise InvalidToken("the registration access token is invalid", detail="client deleted during the update")
    return json_response(client_information(services, replacement))


async def delete(request: web.Request) -> web.Response:
    services, client = await load_client(request)
    await services.stores.delete_client(client.client_id)
    return web.Response(status=204, headers={"Cache-Control": "no-store"})
