"""Discovery documents: RFC 8414 authorization server metadata, its OpenID
Connect alias, and RFC 9728 protected-resource metadata."""

from __future__ import annotations

from aiohttp import web

from frontauth.appkeys import SERVICES
from frontauth.services import Services

CACHE = {"Cache-Control": "public, max-age=300"}


def authorization_server_metadata(services: Services) -> dict[str, object]:
    settings = services.settings
    issuer = settings.issuer
    auth_methods = ["none", "client_secret_basic", "client_secret_post"]
    document: dict[str, object] = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "userinfo_endpoint": f"{issuer}/oauth/userinfo",
        "scopes_supported": sorted(settings.scopes),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "code_challenge_methods_supported": ["S256"],
        # RFC 9207 §3: the authorization response carries iss.
        "authorization_response_iss_parameter_supported": True,
    }
    if settings.registration.enabled:
        document["registration_endpoint"] = f"{issuer}/oauth/register"
    return document


async def authorization_server(request: web.Request) -> web.Response:
    return web.json_response(authorization_server_metadata(request.app[SERVICES]), headers=CACHE)


async def protected_resource(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    settings = services.settings
    document = {
        "resource": settings.audiences[0],
        "authorization_servers": [settings.issuer],
        "scopes_supported": sorted(settings.scopes),
        "bearer_methods_supported": ["header"],
        "resource_signing_alg_values_supported": [services.keys.alg],
    }
    return web.json_response(document, headers=CACHE)


async def jwks(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVICES].keys.public_jwks, headers=CACHE)
