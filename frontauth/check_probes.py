"""``frontauth check --url``: probes of a running frontauth.

Probes, in order: the authorization server metadata (served, issuer consistent,
S256 only), the JWKS (served, public keys only), the protected-resource
metadata (served for the resources on the issuer's origin, and claiming none
elsewhere), a made-up code at the token endpoint (refused with
``invalid_grant``), the security headers, and plain HTTP (redirected or
refused). Every request goes to the probed URL's host and port; URLs taken from
the metadata are used for their path only, so a wrong issuer cannot send the
probe elsewhere.
"""

from __future__ import annotations

import json
import secrets
import ssl
import typing
import urllib.parse

import aiohttp

from frontauth import config
from frontauth.check import FAIL, PASS, WARN, Finding
from frontauth.endpoints.metadata import origin_of, well_known_url
from frontauth.keys import PRIVATE_MEMBERS

TIMEOUT = aiohttp.ClientTimeout(total=10)
# Largest response body a probe reads. frontauth's documents are a few kilobytes,
# and the cap keeps a hostile or broken server from filling the memory of check.
MAX_BODY = 1024 * 1024
PROBE_REDIRECT_URI = "http://127.0.0.1/frontauth-check"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class BodyTooLarge(Exception):
    """A probed response body exceeded MAX_BODY."""


async def read_body(response: aiohttp.ClientResponse) -> bytes:
    """Read a response body of at most MAX_BODY bytes, or raise BodyTooLarge."""
    if (response.content_length or 0) > MAX_BODY:
        raise BodyTooLarge(f"the body is over {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            raise BodyTooLarge(f"the body is over {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> typing.Any:
    """Return the JSON value of a body, or None when it is not JSON or nests too deeply for the json module."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


class Probe:
    """One HTTP session toward the probed server, and the findings so far."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession, tls: ssl.SSLContext | bool) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.tls = tls
        self.findings: list[Finding] = []

    def add(self, item: str, status: str, reason: str, fix: str = "") -> None:
        self.findings.append(Finding(item, status, reason, fix))

    def url_for(self, path_or_url: str) -> str:
        """Return the probed server's URL for the path of ``path_or_url``."""
        path = urllib.parse.urlsplit(path_or_url).path or "/"
        return self.base_url + path

    async def get(self, path: str) -> tuple[aiohttp.ClientResponse, bytes]:
        async with self.session.get(self.url_for(path), ssl=self.tls, allow_redirects=False) as response:
            return response, await read_body(response)


async def _json(probe: Probe, item: str, path: str) -> tuple[dict[str, typing.Any] | None, aiohttp.ClientResponse | None]:
    """GET a JSON document; record a failure and return None when it is not served."""
    try:
        response, body = await probe.get(path)
    except (aiohttp.ClientError, TimeoutError, BodyTooLarge) as exc:
        probe.add(item, FAIL, f"GET {path} failed: {type(exc).__name__}: {exc}")
        return None, None
    if response.status != 200:
        probe.add(item, FAIL, f"GET {path} answered {response.status}, expected 200")
        return None, response
    document = parse_json(body)
    if not isinstance(document, dict):
        probe.add(item, FAIL, f"GET {path} did not return a JSON object")
        return None, response
    return document, response


def check_metadata(probe: Probe, metadata: dict[str, typing.Any], issuer: str) -> None:
    served = metadata.get("issuer")
    if served != issuer:
        probe.add("metadata", FAIL, f"issuer is {served!r}, expected {issuer!r}", "public_url")
    else:
        urls = [value for name, value in metadata.items() if name.endswith("_endpoint") or name == "jwks_uri"]
        outside = [url for url in urls if not str(url).startswith(issuer + "/")]
        if outside:
            probe.add("metadata", FAIL, f"endpoints outside the issuer: {', '.join(map(str, outside))}", "public_url")
        else:
            probe.add("metadata", PASS, f"served; issuer {issuer} and {len(urls)} endpoint URLs under it")
    methods = metadata.get("code_challenge_methods_supported")
    if methods == ["S256"]:
        probe.add("served PKCE", PASS, "code_challenge_methods_supported is [\"S256\"]")
    else:
        probe.add("served PKCE", FAIL, f"code_challenge_methods_supported is {methods!r}, expected [\"S256\"]")


async def check_jwks(probe: Probe, jwks_uri: str) -> None:
    document, _ = await _json(probe, "served JWKS", jwks_uri)
    if document is None:
        return
    keys = document.get("keys")
    if not isinstance(keys, list) or not keys:
        probe.add("served JWKS", FAIL, "the JWKS has no keys")
        return
    leaked = [str(key.get("kid")) for key in keys if isinstance(key, dict) and PRIVATE_MEMBERS & set(key)]
    if leaked:
        probe.add("served JWKS", FAIL, f"private key members published for kid {', '.join(leaked)}", "keys.previous")
        return
    missing_kid = sum(1 for key in keys if not isinstance(key, dict) or not key.get("kid"))
    if missing_kid:
        probe.add("served JWKS", FAIL, f"{missing_kid} key(s) without kid")
        return
    probe.add("served JWKS", PASS, f"{len(keys)} public key(s), kid {', '.join(str(key['kid']) for key in keys)}")


async def _get_document(probe: Probe, path: str) -> tuple[int, dict[str, typing.Any] | None]:
    """GET a document; return the status and the JSON object, or None when the body is not one."""
    response, body = await probe.get(path)
    document = parse_json(body)
    return response.status, document if isinstance(document, dict) else None


def _resource_problem(document: dict[str, typing.Any] | None, resource: str | None, origin: str, issuer: str) -> str:
    """Return what is wrong with a protected-resource document, or '' when nothing is.

    ``resource`` is the identifier the document must name (RFC 9728 §3.3), or
    None when any resource on ``origin`` will do.
    """
    if document is None:
        return "is not a JSON object"
    named = document.get("resource")
    if resource is not None and named != resource:
        return f"names resource {named!r}, expected {resource!r}"
    if resource is None and origin_of(str(named)) != origin:
        return f"names resource {named!r}, which is not on {origin}, so RFC 9728 section 3.3 clients discard it"
    servers = document.get("authorization_servers") or []
    if issuer not in servers:
        return f"lists authorization_servers {servers!r}, expected it to name {issuer}"
    return ""


async def check_protected_resource(probe: Probe, issuer: str, settings: config.Settings | None) -> None:
    """RFC 9728 §3.1: check that this origin serves its resources' metadata and claims no other resource.

    With settings, each configured resource on the issuer's origin must be
    served at its path-inserted address and name this issuer. The root must
    name a resource on this origin, or return 404 when there is none. Resources
    on other origins publish their own metadata there, which the probe does
    not fetch: every request goes to the probed server.
    """
    item = "resource metadata"
    origin = origin_of(issuer)
    resources = settings.audiences if settings is not None else ()
    on_origin = [resource for resource in resources if origin_of(resource) == origin]
    off_origin = [resource for resource in resources if origin_of(resource) != origin]
    try:
        for resource in on_origin:
            path = urllib.parse.urlsplit(well_known_url(resource)).path
            status, document = await _get_document(probe, path)
            if status != 200:
                probe.add(item, FAIL, f"GET {path} answered {status}, expected the metadata of {resource}", "resources")
                return
            problem = _resource_problem(document, resource, origin, issuer)
            if problem:
                probe.add(item, FAIL, f"GET {path} {problem}", "resources")
                return
        root = "/.well-known/oauth-protected-resource"
        status, document = await _get_document(probe, root)
    except (aiohttp.ClientError, TimeoutError, BodyTooLarge) as exc:
        probe.add(item, FAIL, f"GET of the resource metadata failed: {type(exc).__name__}: {exc}")
        return
    others = f"; resources on other origins publish their own metadata: {', '.join(off_origin)}" if off_origin else ""
    if status == 404 and not on_origin:
        probe.add(item, PASS, f"no resource on {origin}, and the root answers 404{others}")
        return
    if status != 200:
        expected = "200 or 404" if settings is None else "200"
        probe.add(item, FAIL, f"GET {root} answered {status}, expected {expected}", "resources")
        return
    problem = _resource_problem(document, None, origin, issuer)
    if problem:
        probe.add(item, FAIL, f"GET {root} {problem}", "resources")
        return
    served = on_origin or [str(document.get("resource")) if document else ""]
    probe.add(item, PASS, f"served for {', '.join(served)}, naming this issuer{others}")


async def check_bogus_code(probe: Probe, token_endpoint: str, client_id: str | None) -> None:
    """A made-up code must be refused with invalid_grant, without tokens and with no-store."""
    form = {
        "grant_type": "authorization_code",
        "code": secrets.token_urlsafe(32),
        "redirect_uri": PROBE_REDIRECT_URI,
        "code_verifier": secrets.token_urlsafe(48),
        "client_id": client_id or "frontauth-check-probe",
    }
    try:
        async with probe.session.post(probe.url_for(token_endpoint), data=form, ssl=probe.tls) as response:
            status = response.status
            headers = response.headers
            body = parse_json(await read_body(response))
    except (aiohttp.ClientError, TimeoutError, BodyTooLarge) as exc:
        probe.add("bogus code", FAIL, f"token endpoint request failed: {type(exc).__name__}: {exc}")
        return
    error = body.get("error") if isinstance(body, dict) else None
    if status == 200 or (isinstance(body, dict) and "access_token" in body):
        probe.add("bogus code", FAIL, "the token endpoint issued tokens for a made-up code")
    elif headers.get("Cache-Control") != "no-store":
        probe.add("bogus code", FAIL, f"the token error lacks Cache-Control: no-store (got {headers.get('Cache-Control')!r})")
    elif error == "invalid_grant":
        probe.add("bogus code", PASS, f"refused with {status} invalid_grant")
    elif error == "invalid_client" and client_id is None:
        probe.add(
            "bogus code", WARN,
            f"refused with {status} invalid_client before the code was checked; name a public client to reach the code check",
            "--client-id",
        )
    else:
        probe.add("bogus code", FAIL, f"refused with {status} {error!r}, expected 400 invalid_grant")


def check_headers(probe: Probe, response: aiohttp.ClientResponse) -> None:
    missing = [f"{name}: {value}" for name, value in SECURITY_HEADERS.items() if response.headers.get(name) != value]
    if "Content-Security-Policy" not in response.headers:
        missing.append("Content-Security-Policy")
    if probe.base_url.startswith("https://") and "max-age=" not in response.headers.get("Strict-Transport-Security", ""):
        missing.append("Strict-Transport-Security")
    if missing:
        probe.add("security headers", FAIL, f"missing or different: {'; '.join(missing)}")
        return
    hsts = " and HSTS" if probe.base_url.startswith("https://") else ""
    probe.add("security headers", PASS, f"nosniff, X-Frame-Options, Referrer-Policy, CSP{hsts} present")


async def check_plain_http(probe: Probe) -> None:
    """Over https, the same host over plain HTTP must redirect to https or be refused."""
    parts = urllib.parse.urlsplit(probe.base_url)
    if parts.scheme != "https":
        probe.add("plain HTTP", FAIL, f"{probe.base_url} is served over plain HTTP", "public_url, server.tls_cert")
        return
    http_url = urllib.parse.urlunsplit(("http", parts.netloc, "/.well-known/oauth-authorization-server", "", ""))
    try:
        async with probe.session.get(http_url, allow_redirects=False) as response:
            status = response.status
            location = response.headers.get("Location", "")
    except (aiohttp.ClientError, TimeoutError) as exc:
        probe.add("plain HTTP", PASS, f"{http_url} refused ({type(exc).__name__})")
        return
    if 300 <= status < 400 and location.startswith("https://"):
        probe.add("plain HTTP", PASS, f"{http_url} redirects to {location}")
    elif status >= 400:
        probe.add("plain HTTP", PASS, f"{http_url} refused with {status}")
    else:
        probe.add("plain HTTP", FAIL, f"{http_url} answered {status} without redirecting to https")


async def probe(
    base_url: str, settings: config.Settings | None, *, ca_file: str | None = None, client_id: str | None = None
) -> list[Finding]:
    """Probe a running frontauth at ``base_url``; return one finding per probe."""
    base_url = base_url.rstrip("/")
    issuer = settings.issuer if settings is not None else base_url
    if client_id is None and settings is not None:
        public = [client.client_id for client in settings.clients if not client.client_secret_hash]
        client_id = public[0] if public else None
    tls: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        current = Probe(base_url, session, tls)
        metadata, response = await _json(current, "metadata", "/.well-known/oauth-authorization-server")
        if metadata is not None and response is not None:
            check_metadata(current, metadata, issuer)
            check_headers(current, response)
            await check_jwks(current, str(metadata.get("jwks_uri") or "/.well-known/jwks.json"))
            await check_protected_resource(current, issuer, settings)
            await check_bogus_code(current, str(metadata.get("token_endpoint") or "/oauth/token"), client_id)
        await check_plain_http(current)
    return current.findings
