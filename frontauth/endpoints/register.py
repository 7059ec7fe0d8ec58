"""Dynamic client registration (RFC 7591).

Steps: check_access (enabled, initial access token), check_address_limit
(registrations per client address), check_metadata (redirect URIs, grant and
response types, auth method, scope, display fields), then the registration
cap. Display fields (the name, web addresses and contacts) may contain no
control, format or unassigned characters, because the sign-in and consent
pages show the name, and a bidirectional control such as U+202E can reorder
the text around it. The client is stored and the response is 201 with its
metadata, its ``registration_client_uri`` and a ``registration_access_token``
(RFC 7592 §3) that frontauth keeps only as a digest. A client that never
redeems a code is deleted after ``registration.unused_ttl`` seconds.
"""

from __future__ import annotations

import fnmatch
import hmac
import json
import time
import typing
import unicodedata
import urllib.parse
import uuid

import attrs
from aiohttp import web

from frontauth import uri_syntax
from frontauth.appkeys import SERVICES
from frontauth.ratelimit import RateLimited, client_address, retry_after_seconds
from frontauth.clients import is_loopback_host
from frontauth.errors import (
    AccessDenied,
    InvalidClientMetadata,
    InvalidRedirectUri,
    InvalidRequest,
    InvalidToken,
)
from frontauth.responses import CLIENT_ID, json_response
from frontauth.services import Services
from frontauth.stores import ClientRecord
from frontauth.tokens import digest, new_opaque
from frontauth.users import hash_random_secret

AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post")
GRANT_TYPES = ("authorization_code", "refresh_token")
MAX_REDIRECT_URIS = 10
MAX_URI_LENGTH = 2000
MAX_NAME_LENGTH = 200
APPLICATION_TYPES = ("native", "web")
# The redirect URIs each application_type may register; None is a registration without one.
REDIRECT_RULES = {
    "web": "a web client's redirect URIs must use https on a host other than a loopback address",
    "native": (
        "a native client's redirect URIs must use http on a loopback address, https, "
        "or a private-use scheme with a period in its name"
    ),
    None: "redirect URIs must use https, or http on a loopback address",
}
# Cap window: registrations counted over ten years amount to "ever".
CAP_WINDOW = 10 * 365 * 86400.0
# Unicode general categories rejected in display fields: control (Cc), format
# (Cf: bidirectional controls, zero-width characters), surrogate (Cs), private
# use (Co), unassigned (Cn), and line and paragraph separators (Zl, Zp).
# Cf includes the zero-width joiner, so emoji sequences built with it are rejected too.
# NOTE: "unassigned" follows the Unicode version of the running Python
# (unicodedata.unidata_version), so a character newer than that is rejected.
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Letters and symbols that render as nothing or as blank space (Hangul fillers,
# the blank braille pattern) and the combining grapheme joiner, which only hides
# the marks around it.
BLANK_CHARACTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f")
# Parameters of the authorization response (RFC 6749 §4.1.2, §4.1.2.1; RFC 9207).
RESPONSE_PARAMETERS = frozenset({"code", "state", "iss", "error", "error_description", "error_uri"})
# String metadata a person reads (RFC 7591 §2). contacts, a list, is checked separately.
# Only client_name, client_uri and logo_uri are stored.
DISPLAY_FIELDS = ("client_name", "client_uri", "logo_uri", "tos_uri", "policy_uri")


def check_access(services: Services, request: web.Request) -> None:
    settings = services.settings.registration
    if not settings.enabled:
        raise AccessDenied("dynamic client registration is disabled")
    expected = settings.initial_access_token
    if expected is not None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
            raise InvalidToken("a valid initial access token is required to register (RFC 7591 section 3)")


async def check_address_limit(services: Services, request: web.Request) -> None:
    """Count this registration against the client address; over the limit, raise 429."""
    settings = services.settings
    if not settings.ratelimit.enabled:
        return
    address = client_address(request, settings.server.trust_proxy)
    key = services.stores.key("ratelimit", f"registrations:{address}")
    rule = settings.registration
    state = await services.driver.hit(key, rule.address_window, rule.max_per_address, time.time())
    if not state.allowed:
        retry_after = retry_after_seconds(state)
        raise RateLimited(
            f"too many registrations from this address; retry after {retry_after} seconds",
            headers={"Retry-After": retry_after},
        )


def _string(metadata: dict[str, object], name: str, limit: int = MAX_NAME_LENGTH) -> str | None:
    value = metadata.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidClientMetadata(f"{name} must be a string of at most {limit} characters")
    return value


def _string_list(metadata: dict[str, object], name: str) -> list[str] | None:
    value = metadata.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidClientMetadata(f"{name} must be an array of strings")
    return value


def is_hidden(character: str) -> bool:
    """Return whether a character is one that display fields may not contain."""
    return character in BLANK_CHARACTERS or unicodedata.category(character) in HIDDEN_CATEGORIES


def hidden_character(text: str) -> str | None:
    """Return the first hidden or blank character of text, or None when there is none."""
    return next((character for character in text if is_hidden(character)), None)


def check_display_fields(metadata: dict[str, object]) -> None:
    """Reject display fields that are not strings or that contain a hidden or blank character.

    RFC 7591 §3.2.2 names the error for a metadata value the server does not accept: invalid_client_metadata.
    """
    values: list[tuple[str, str]] = []
    for name in DISPLAY_FIELDS:
        value = _string(metadata, name, MAX_NAME_LENGTH if name == "client_name" else MAX_URI_LENGTH)
        if value is not None:
            values.append((name, value))
    values.extend(("contacts", contact) for contact in _string_list(metadata, "contacts") or [])
    for name, value in values:
        character = hidden_character(value)
        if character is None:
            continue
        code = f"U+{ord(character):04X}"
        if character in BLANK_CHARACTERS:
            raise InvalidClientMetadata(f"{name} contains {code}, a character that shows as blank")
        raise InvalidClientMetadata(f"{name} contains {code}, a control, format or unassigned character")


def check_application_type(metadata: dict[str, object]) -> str | None:
    application_type = _string(metadata, "application_type")
    if application_type is not None and application_type not in APPLICATION_TYPES:
        raise InvalidClientMetadata("application_type must be native or web")
    return application_type


def _allowed_for_type(parts: urllib.parse.SplitResult, application_type: str | None) -> bool:
    """Return whether a parsed redirect URI suits the client's application_type."""
    loopback = is_loopback_host(parts.hostname)
    https = parts.scheme == "https" and bool(parts.hostname)
    http_loopback = parts.scheme == "http" and loopback
    if application_type == "web":
        return https and not loopback
    if application_type == "native":
        # RFC 8252 §7: loopback http on any port, a claimed https URL, or a
        # private-use scheme named after a reverse domain name (§7.1), which
        # always contains a period and so excludes javascript: and data:.
        return http_loopback or https or "." in parts.scheme
    # Deviation: OpenID Connect Registration defaults application_type to web,
    # but many MCP clients omit it and register loopback URIs, so both are allowed.
    return https or http_loopback


def check_redirect_uri(services: Services, uri: str, application_type: str | None = None) -> None:
    if len(uri) > MAX_URI_LENGTH:
        raise InvalidRedirectUri("a redirect URI is too long")
    syntax_problem = uri_syntax.problem(uri)
    if syntax_problem is not None:
        raise InvalidRedirectUri(syntax_problem)
    try:
        parts = urllib.parse.urlsplit(uri)
        _ = parts.port  # raises ValueError for a port that is not a number from 0 to 65535
    except ValueError:  # also an unclosed IPv6 bracket
        raise InvalidRedirectUri("a redirect URI is not a valid URI") from None
    if not parts.scheme or parts.fragment or "#" in uri:
        # RFC 6749 §3.1.2: absolute URI without a fragment.
        raise InvalidRedirectUri("redirect URIs must be absolute and carry no fragment")
    query_names = {name for name, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)}
    clashing = sorted(RESPONSE_PARAMETERS & query_names)
    if clashing:
        # A query that already carries code, state or iss would put two of them in
        # the redirect, and a client reading the first would take the forged one.
        raise InvalidRedirectUri(f"a redirect URI must not carry the response parameter {clashing[0]} in its query")
    patterns = services.settings.registration.allowed_redirect_uris
    if patterns:
        if not any(uri_syntax.matches_pattern(uri, pattern) for pattern in patterns):
            raise InvalidRedirectUri("a redirect URI is not allowed by this server's registration policy")
        return
    if not _allowed_for_type(parts, application_type):
        raise InvalidRedirectUri(REDIRECT_RULES[application_type])


def check_metadata(services: Services, metadata: dict[str, object]) -> ClientRecord:
    application_type = check_application_type(metadata)
    redirect_uris = _string_list(metadata, "redirect_uris")
    if not redirect_uris:
        raise InvalidRedirectUri("redirect_uris is required")
    if len(redirect_uris) > MAX_REDIRECT_URIS:
        raise InvalidRedirectUri(f"at most {MAX_REDIRECT_URIS} redirect URIs may be registered")
    for uri in redirect_uris:
        check_redirect_uri(services, uri, application_type)

    # RFC 7591 §2: the default method is client_secret_basic.
    method = _string(metadata, "token_endpoint_auth_method") or "client_secret_basic"
    if method not in AUTH_METHODS:
        raise InvalidClientMetadata(f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}")
    grant_types = _string_list(metadata, "grant_types") or ["authorization_code"]
    if any(g not in GRANT_TYPES for g in grant_types):
        raise InvalidClientMetadata("grant_types may contain only authorization_code and refresh_token")
    if "authorization_code" not in grant_types:
        raise InvalidClientMetadata("grant_types must include authorization_code")
    response_types = _string_list(metadata, "response_types") or ["code"]
    if response_types != ["code"]:
        raise InvalidClientMetadata("response_types may contain only code")
    scope = _string(metadata, "scope", 1000)
    if scope is not None:
        unknown = [s for s in scope.split() if s not in services.settings.scopes]
        if unknown:
            raise InvalidClientMetadata("scope names a scope this server does not offer")
    # Refresh tokens are issued with every code: registering without the
    # refresh_token grant would make them unusable, so it is added.
    if "refresh_token" not in grant_types:
        grant_types = [*grant_types, "refresh_token"]
    check_display_fields(metadata)
    return ClientRecord(
        client_id="",
        redirect_uris=redirect_uris,
        token_endpoint_auth_method=method,
        client_name=_string(metadata, "client_name"),
        client_uri=_string(metadata, "client_uri", MAX_URI_LENGTH),
        logo_uri=_string(metadata, "logo_uri", MAX_URI_LENGTH),
        scope=scope,
        grant_types=grant_types,
        response_types=response_types,
        application_type=application_type,
        dynamic=True,
    )


def _reject_constant(name: str) -> typing.NoReturn:
    raise ValueError(f"{name} is not a JSON value")


async def _read_json(request: web.Request) -> dict[str, object]:
    if request.content_type != "application/json":
        raise InvalidRequest("the body must be application/json (RFC 7591 section 3.1)")
    raw = await request.read()
    try:
        # RFC 8259 §8.1: JSON between systems is UTF-8, so the body is decoded
        # as UTF-8 here; json.loads on bytes would also take UTF-16 and UTF-32.
        # NaN and Infinity are not JSON (RFC 8259 §6) and are rejected too.
        metadata = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError):
        raise InvalidClientMetadata("the body is not valid JSON") from None
    except RecursionError:
        # json's parser recurses once per nesting level; a 64 KiB body can nest far deeper than the stack.
        raise InvalidClientMetadata("the body is nested too deeply") from None
    if not isinstance(metadata, dict):
        raise InvalidClientMetadata("the body must be a JSON object")
    try:
        json.dumps(metadata, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        # A \ud800 escape decodes to a lone surrogate, which no page or log can encode as UTF-8.
        raise InvalidClientMetadata("the body contains an unpaired surrogate escape") from None
    return metadata


def configuration_uri(services: Services, client_id: str) -> str:
    """Return the RFC 7592 client configuration endpoint of a client."""
    return f"{services.settings.issuer}/oauth/register/{client_id}"


def client_information(services: Services, client: ClientRecord) -> dict[str, object]:
    """Return the client information response (RFC 7591 §3.2.1, RFC 7592 §3) without secrets."""
    body: dict[str, object] = {
        "client_id": client.client_id,
        "client_id_issued_at": client.client_id_issued_at,
        "redirect_uris": client.redirect_uris,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "grant_types": client.grant_types,
        "response_types": client.response_types,
        "registration_client_uri": configuration_uri(services, client.client_id),
    }
    for name in ("client_name", "client_uri", "logo_uri", "scope", "application_type"):
        value = getattr(client, name)
        if value is not None:
            body[name] = value
    return body


async def register(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    check_access(services, request)
    await check_address_limit(services, request)
    metadata = await _read_json(request)
    record = check_metadata(services, metadata)

    cap = services.settings.registration.max_clients
    # Registrations older than unused_ttl are in use or deleted, so counting
    # within that period caps the clients waiting unused without letting a
    # burst of registrations lock registration for good.
    period = float(services.settings.registration.unused_ttl) or CAP_WINDOW
    window = await services.driver.hit(services.stores.key("ratelimit", "registrations"), period, cap, time.time())
    if not window.allowed:
        raise AccessDenied("the server has reached its limit of registered clients")

    secret = new_opaque() if record.token_endpoint_auth_method != "none" else None
    registration_token = new_opaque()
    unused_ttl = services.settings.registration.unused_ttl
    client = attrs.evolve(
        record,
        client_id=uuid.uuid4().hex,
        client_secret_hash=hash_random_secret(secret) if secret else None,
        client_id_issued_at=int(time.time()),
        registration_token_hash=digest(registration_token),
        used=unused_ttl == 0,
    )
    await services.stores.create_client(client, unused_ttl or None)
    request[CLIENT_ID] = client.client_id
    body = client_information(services, client)
    body["registration_access_token"] = registration_token
    if secret is not None:
        body["client_secret"] = secret
        body["client_secret_expires_at"] = 0
    return json_response(body, status=201)

