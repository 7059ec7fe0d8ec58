"""Discovery documents: RFC 8414 authorization server metadata, its OpenID
Connect alias, and RFC 9728 protected-resource metadata.

Clients probe several addresses. For an issuer with a path (``https://host/tenant``)
they try the path-inserted RFC 8414 form ``/.well-known/oauth-authorization-server/tenant``,
the same insertion for ``openid-configuration``, and the OpenID Connect
Discovery form ``/tenant/.well-known/openid-configuration``. For a resource with
a path (``https://host/mcp``) they try ``/.well-known/oauth-protected-resource/mcp``
(RFC 9728 §3.1). Every one is served here, besides the root documents.

RFC 9728 §3.1 puts a resource's metadata at a URL built from the resource
identifier, so only the resource's own origin can publish it. §3.3 has clients
discard a document whose ``resource`` differs from the identifier they built
the URL from. frontauth therefore serves protected-resource metadata only
for configured resources on its own origin (the issuer's scheme, host and
port). A resource on another origin, such as an MCP server at
``https://mcp.example.com/mcp``, publishes its own document (as
``examples/mcp_server.py`` does), and the addresses here answer 404 for it.
"""

from __future__ import annotations

import urllib.parse

from aiohttp import web

from frontauth.appkeys import SERVICES
from frontauth.identifiers import canonical, find_resource, path_of
from frontauth.responses import json_response
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
    # A client_id may be an https URL naming a client ID metadata document (frontauth.cimd).
    document["client_id_metadata_document_supported"] = settings.cimd.enabled
    return document


async def authorization_server(request: web.Request) -> web.Response:
    return web.json_response(authorization_server_metadata(request.app[SERVICES]), headers=CACHE)


def add_path_routes(router: web.UrlDispatcher) -> None:
    """Register the path-inserted discovery addresses; each handler returns 404 for a path it does not serve."""
    router.add_get("/.well-known/oauth-authorization-server/{path:.+}", authorization_server_at_path)
    router.add_get("/.well-known/openid-configuration/{path:.+}", authorization_server_at_path)
    router.add_get("/{path:.+}/.well-known/openid-configuration", authorization_server_at_path)
    router.add_get("/.well-known/oauth-protected-resource/{path:.+}", protected_resource_at_path)


def requested_path(request: web.Request) -> str:
    """Return the path a discovery request inserted, as '/tenant', without a trailing slash."""
    return "/" + request.match_info["path"].strip("/")


async def authorization_server_at_path(request: web.Request) -> web.Response:
    """RFC 8414 §3.1 and OpenID Connect Discovery §4: metadata of an issuer with a path."""
    services = request.app[SERVICES]
    issuer_path = path_of(services.settings.issuer)
    if not issuer_path or requested_path(request) != issuer_path:
        raise web.HTTPNotFound()
    return web.json_response(authorization_server_metadata(services), headers=CACHE)


async def protected_resource_at_path(request: web.Request) -> web.Response:
    """RFC 9728 §3.1: metadata of the configured resource on this origin whose path was inserted."""
    services = request.app[SERVICES]
    origin = origin_of(services.settings.issuer)
    resource = find_resource(origin + requested_path(request), own_resources(services))
    if resource is None:
        return resource_not_found(services, "no configured resource on this origin has that path")
    return web.json_response(protected_resource_metadata(services, resource), headers=CACHE)


async def protected_resource(request: web.Request) -> web.Response:
    """RFC 9728 §3.1: metadata at the root, for a resource on this origin.

    A configured resource equal to the origin is the one whose well-known URL
    this is. Otherwise the root names the first configured resource on this
    origin (the default resource when it is here), because MCP clients fall
    back to the root when the path-inserted address fails.
    Deviation: RFC 9728 §3.3 would have a strict client reject that document,
    because its resource has a path and the root URL has none.
    """
    services = request.app[SERVICES]
    origin = origin_of(services.settings.issuer)
    own = own_resources(services)
    resource = find_resource(origin, own) or (own[0] if own else None)
    if resource is None:
        return resource_not_found(services, "no configured resource is on this origin")
    return web.json_response(protected_resource_metadata(services, resource), headers=CACHE)


def origin_of(url: str) -> str:
    """Return scheme://host[:port] of an absolute URL in canonical form, or '' when it is not absolute."""
    parts = urllib.parse.urlsplit(canonical(url) or "")
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme else ""


def own_resources(services: Services) -> tuple[str, ...]:
    """Return the configured resources on the issuer's origin, in configured order."""
    origin = origin_of(services.settings.issuer)
    return tuple(resource for resource in services.settings.audiences if origin_of(resource) == origin)


def resource_not_found(services: Services, description: str) -> web.Response:
    """Return 404 naming where the configured resources on other origins publish their metadata."""
    origin = origin_of(services.settings.issuer)
    elsewhere = [resource for resource in services.settings.audiences if origin_of(resource) != origin]
    if elsewhere:
        listed = ", ".join(f"{resource} at {well_known_url(resource)}" for resource in elsewhere)
        description += f"; resources on other origins publish their own metadata (RFC 9728 section 3.1): {listed}"
    return json_response({"error": "not_found", "error_description": description}, status=404)


def well_known_url(resource: str) -> str:
    """Return the RFC 9728 §3.1 metadata URL of a resource: the well-known path inserted before its path."""
    parts = urllib.parse.urlsplit(resource)
    path = parts.path.rstrip("/")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/.well-known/oauth-protected-resource" + path, "", ""))


def protected_resource_metadata(services: Services, resource: str) -> dict[str, object]:
    settings = services.settings
    return {
        "resource": resource,
        "authorization_servers": [settings.issuer],
        "scopes_supported": sorted(settings.scopes),
        "bearer_methods_supported": ["header"],
        # No resource_signing_alg_values_supported: RFC 9728 §2 defines it as the
        # algorithms the resource signs its responses with, and it signs none.
    }


async def jwks(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVICES].keys.public_jwks, headers=CACHE)
