"""Clients: lookup, redirect_uri matching and client authentication.

Pre-registered clients come from configuration and are never written to
storage; dynamically registered ones (RFC 7591) live in the shared store so
every instance can find them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import urllib.parse

from frontauth import uri_syntax

from frontauth import cimd, quirks
from frontauth.config import ClientSettings, Settings
from frontauth.errors import InvalidClient, InvalidRequest
from frontauth.stores import ClientRecord, Stores
from frontauth.users import verify_password

LOOPBACK_HOSTS = ("127.0.0.1", "[::1]", "localhost")
# Longest client_id looked up in storage; frontauth issues 32 characters.
MAX_STORED_CLIENT_ID = 255


def client_from_settings(entry: ClientSettings) -> ClientRecord:
    method = entry.token_endpoint_auth_method or ("client_secret_basic" if entry.client_secret_hash else "none")
    return ClientRecord(
        client_id=entry.client_id,
        redirect_uris=list(entry.redirect_uris),
        token_endpoint_auth_method=method,
        client_secret_hash=entry.client_secret_hash,
        client_name=entry.client_name,
        client_uri=entry.client_uri,
        logo_uri=entry.logo_uri,
        scope=entry.scope,
    )


class ClientRegistry:
    """Finds clients in configuration first, then in storage."""

    def __init__(self, settings: Settings, stores: Stores) -> None:
        self._configured = {c.client_id: client_from_settings(c) for c in settings.clients}
        self._stores = stores
        self._settings = settings
        self.documents = cimd.DocumentClients(settings, stores)

    def is_configured(self, client_id: str) -> bool:
        return client_id in self._configured

    def is_stored(self, client_id: str) -> bool:
        """Return whether find() looks this client_id up in storage, not in configuration or a metadata document."""
        return (
            0 < len(client_id) <= MAX_STORED_CLIENT_ID
            and client_id not in self._configured
            and not cimd.is_document_url(client_id, self._settings)
        )

    async def find(self, client_id: str) -> ClientRecord | None:
        """Return the client, or None when no client has this client_id."""
        if client_id in self._configured:
            return self._configured[client_id]
        if not client_id or len(client_id) > 2000:
            return None
        if cimd.is_document_url(client_id, self._settings):
            try:
                return await self.documents.resolve(client_id)
            except cimd.DocumentRejected:
                return None
        if len(client_id) > MAX_STORED_CLIENT_ID:
            return None
        return await self._stores.get_client(client_id)

    async def authenticate(
        self, form: dict[str, str], authorization: str | None
    ) -> ClientRecord:
        """Identify and authenticate the client of a token, revocation or introspection request.

        Public clients identify themselves with ``client_id`` alone; confidential
        clients must use the method they registered (RFC 6749 §2.3.1). Secrets
        are compared in constant time.

        Raises:
            InvalidClient: unknown client, wrong or missing secret, or a method
                other than the registered one.
            InvalidRequest: credentials given in two ways at once.
        """
        basic = _parse_basic(authorization)
        form_id = form.get("client_id")
        form_secret = form.get("client_secret")
        if basic is not None and form_secret is not None:
            # RFC 6749 §2.3.1: a client must not use more than one authentication method per request.
            raise InvalidRequest("client credentials must be sent in one way only, not in both the header and the body")
        if basic is not None:
            client_id, secret = basic
            if form_id is not None and form_id != client_id:
                raise InvalidRequest("client_id in the body differs from the Authorization header")
            method = "client_secret_basic"
        elif form_secret is not None:
            client_id, secret, method = form_id or "", form_secret, "client_secret_post"
        else:
            client_id, secret, method = form_id or "", None, "none"
        if not client_id:
            raise InvalidClient("client authentication is required", headers=_challenge(authorization))

        client = await self.find(client_id)
        if client is None:
            raise InvalidClient("client authentication failed", detail="unknown client_id", headers=_challenge(authorization))
        if not client.confidential:
            if secret is not None:
                raise InvalidClient(
                    "client authentication failed", detail="public client sent a secret", headers=_challenge(authorization)
                )
            return client
        if method != client.token_endpoint_auth_method or secret is None or client.client_secret_hash is None:
            raise InvalidClient(
                "client authentication failed",
                detail=f"client registered {client.token_endpoint_auth_method}, request used {method}",
                headers=_challenge(authorization),
            )
        # scrypt takes tens of milliseconds: keep it off the event loop, as sign-in does.
        if not await asyncio.to_thread(verify_password, secret, client.client_secret_hash):
            raise InvalidClient("client authentication failed", detail="wrong client secret", headers=_challenge(authorization))
        return client


def basic_client_id(header: str | None) -> str | None:
    """Return the client_id of HTTP Basic client credentials; None when absent or malformed."""
    try:
        credentials = _parse_basic(header)
    except InvalidClient:
        return None
    return None if credentials is None else credentials[0]


def _challenge(authorization: str | None) -> dict[str, str]:
    # RFC 6749 §5.2: a 401 carries a challenge for the scheme the client tried.
    return {"WWW-Authenticate": 'Basic realm="frontauth"'}


def _parse_basic(header: str | None) -> tuple[str, str] | None:
    """Decode HTTP Basic client credentials (RFC 6749 §2.3.1: form-urlencoded id and secret)."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise InvalidClient("unsupported authentication scheme", headers=_challenge(header))
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient("malformed Basic credentials", headers=_challenge(header)) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise InvalidClient("malformed Basic credentials", headers=_challenge(header))
    return urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret)


def is_loopback_host(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and the name localhost."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_loopback_ip(host: str | None) -> bool:
    try:
        return ipaddress.ip_address((host or "").strip("[]")).is_loopback
    except ValueError:
        return False


def redirect_uri_matches(requested: str, registered: str) -> bool:
    """Compare a requested redirect_uri with a registered one.

    Exact string match (OAuth 2.1 §2.3.1), except that a loopback IP literal
    http URI may use any port, because native apps bind an ephemeral port
    (RFC 8252 §7.3). ``localhost`` gets the same tolerance as a client quirk.
    """
    if requested == registered:
        return True
    try:
        req = urllib.parse.urlsplit(requested)
        reg = urllib.parse.urlsplit(registered)
        # Reading .port raises ValueError for a port that is not a number in range.
        _ = (req.port, reg.port)
    except ValueError:
        return False
    if req.scheme != "http" or reg.scheme != "http":
        return False
    # SECURITY: urlsplit drops tabs and line breaks and ignores case, so the
    # text itself must be the registered text but for the port.
    if not uri_syntax.same_except_port(requested, registered):
        return False
    if quirks.localhost_port_differs(requested, registered):
        return True
    if not _is_loopback_ip(reg.hostname) or req.hostname != reg.hostname:
        return False
    # The port is the one part allowed to differ. SECURITY: the fragment is compared too,
    # because RFC 6749 §3.1.2 forbids one in a redirect URI.
    return (req.path, req.query, req.fragment, req.username, req.password) == (
        reg.path, reg.query, reg.fragment, reg.username, reg.password
    )


def find_redirect_uri(client: ClientRecord, requested: str | None) -> str | None:
    """Return the redirect_uri to use, or None when the request's does not match.

    RFC 6749 §3.1.2.3: with one registered URI the parameter may be omitted.
    """
    if requested is None:
        return client.redirect_uris[0] if len(client.redirect_uris) == 1 else None
    for registered in client.redirect_uris:
        if redirect_uri_matches(requested, registered):
            return requested
    return None
