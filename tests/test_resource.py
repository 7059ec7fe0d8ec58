"""Tests of frontauth.resource against a real key set served on loopback.

An aiohttp test server plays the authorization server: it serves RFC 8414
metadata and a JWKS, and counts the requests. The tests sign their own tokens
with joserfc.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import importlib.util
import json
import pathlib
import time
import typing

import httpx
import pytest
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey
from mcp.server.auth.provider import AccessToken
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from frontauth.resource import (
    SCOPE_KEY,
    TOKEN_KEY,
    BearerAuthMiddleware,
    BearerVerifier,
    InsufficientScope,
    InvalidToken,
    KeySetUnavailable,
    MCPTokenVerifier,
    VerifiedToken,
    bearer_auth_middleware,
)

RESOURCE = "https://rs.example/mcp"
# Valid JSON that json.loads cannot parse without a RecursionError, within the
# 256 KiB document limit.
DEEP_JSON = "[" * 100_000 + "]" * 100_000
METADATA_URL = "https://rs.example/.well-known/oauth-protected-resource/mcp"
REPO = pathlib.Path(__file__).resolve().parent.parent


def ec_key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid, "alg": "ES256", "use": "sig"})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class AuthServerStub:
    """Metadata and JWKS endpoints of an authorization server, with request counters."""

    def __init__(self) -> None:
        self.keys: list[Key] = [ec_key("key-1")]
        self.issuer = ""
        self.metadata_requests = 0
        self.jwks_requests = 0
        self.jwks_status = 200
        self.jwks_body: str | None = None
        """A raw body to serve instead of the key set."""
        self.metadata_issuer: str | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/oauth-authorization-server", self.metadata)
        app.router.add_get("/.well-known/jwks.json", self.jwks)
        return app

    async def metadata(self, request: web.Request) -> web.Response:
        self.metadata_requests += 1
        issuer = self.issuer if self.metadata_issuer is None else self.metadata_issuer
        return web.json_response({"issuer": issuer, "jwks_uri": f"{self.issuer}/.well-known/jwks.json"})

    async def jwks(self, request: web.Request) -> web.Response:
        self.jwks_requests += 1
        # Let concurrent verifications pile up behind this one fetch.
        await asyncio.sleep(0.05)
        if self.jwks_status != 200:
            return web.json_response({"error": "unavailable"}, status=self.jwks_status)
        if self.jwks_body is not None:
            return web.Response(text=self.jwks_body, content_type="application/json")
        return web.json_response({"keys": [key.as_dict(private=False) for key in self.keys]})

    def claims(self, **overrides: typing.Any) -> dict[str, typing.Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": "alice",
            "aud": RESOURCE,
            "exp": now + 300,
            "iat": now,
            "nbf": now,
            "jti": "token-1",
            "client_id": "client-1",
            "scope": "mcp read",
            "fid": "family-1",
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def sign(self, key: Key | None = None, header: dict[str, typing.Any] | None = None, **claims: typing.Any) -> str:
        key = key if key is not None else self.keys[0]
        alg = key.get("alg")
        protected = {"alg": alg, "typ": "at+jwt", "kid": key.kid}
        protected.update(header or {})
        return jwt.encode(protected, self.claims(**claims), key, algorithms=[protected["alg"]])


@pytest.fixture
async def auth_server(aiohttp_server: typing.Any) -> AuthServerStub:
    stub = AuthServerStub()
    server = await aiohttp_server(stub.app())
    stub.issuer = f"http://{server.host}:{server.port}"
    return stub


@pytest.fixture
async def verifier(auth_server: AuthServerStub) -> typing.AsyncIterator[BearerVerifier]:
    async with BearerVerifier(auth_server.issuer, RESOURCE, required_scopes=["mcp"]) as verifier:
        yield verifier


async def rejection(verifier: BearerVerifier, token: str) -> str:
    """Return the description of the InvalidToken that verifying *token* raises."""
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify(token)
    assert caught.value.error == "invalid_token"
    assert caught.value.status == 401
    if token:
        assert token not in str(caught.value)
    return caught.value.description


# --- accepted tokens ---------------------------------------------------------


async def test_verify_accepts_valid_token(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    claims = auth_server.claims()
    token = auth_server.sign(**claims)

    verified = await verifier.verify(token)

    assert verified == VerifiedToken(
        subject="alice",
        client_id="client-1",
        scopes=("mcp", "read"),
        audience=(RESOURCE,),
        issuer=auth_server.issuer,
        expires_at=claims["exp"],
        issued_at=claims["iat"],
        token_id="token-1",
        claims=claims,
    )
    assert dict(verified.claims) == claims


async def test_verify_discovers_and_caches_keys(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    for _ in range(3):
        await verifier.verify(auth_server.sign())

    assert auth_server.metadata_requests == 1
    assert auth_server.jwks_requests == 1


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(RSAKey.generate_key(2048, parameters={"kid": "rsa", "alg": "RS256"}), id="RS256"),
        pytest.param(
            OKPKey.generate_key("Ed25519", parameters={"kid": "ed", "alg": "EdDSA"}),
            id="EdDSA",
            # joserfc warns when signing with "EdDSA", which RFC 9864 deprecates.
            marks=pytest.mark.filterwarnings("ignore:EdDSA is deprecated"),
        ),
        pytest.param(ec_key("ec"), id="ES256"),
    ],
)
async def test_verify_accepts_each_algorithm(auth_server: AuthServerStub, verifier: BearerVerifier, key: Key) -> None:
    auth_server.keys = [key]

    verified = await verifier.verify(auth_server.sign())

    assert verified.subject == "alice"


async def test_verify_accepts_audience_list(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    token = auth_server.sign(aud=["https://other.example", RESOURCE])

    verified = await verifier.verify(token)

    assert verified.audience == ("https://other.example", RESOURCE)


async def test_verify_accepts_expiry_within_leeway(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    token = auth_server.sign(exp=int(time.time()) - 10)

    verified = await verifier.verify(token)

    assert verified.subject == "alice"


async def test_verify_accepts_inline_jwks() -> None:
    key = ec_key("inline")
    stub = AuthServerStub()
    stub.keys = [key]
    stub.issuer = "https://as.example"
    token = stub.sign()

    async with BearerVerifier(stub.issuer, RESOURCE, jwks={"keys": [key.as_dict(private=False)]}) as verifier:
        verified = await verifier.verify(token)

    assert verified.client_id == "client-1"
    assert verifier.keys.fetch_count == 0


# --- rejected tokens ---------------------------------------------------------


async def test_verify_rejects_wrong_signature(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    impostor = ec_key("key-1")  # same kid, other private key
    token = auth_server.sign(key=impostor)

    assert await rejection(verifier, token) == "The access token signature is invalid"


async def test_verify_rejects_altered_claims(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    header, _, signature = auth_server.sign().split(".")
    altered = b64url(json.dumps(auth_server.claims(sub="mallory")).encode())

    assert await rejection(verifier, f"{header}.{altered}.{signature}") == "The access token signature is invalid"


async def test_verify_rejects_unknown_kid(auth_server: AuthServerStub) -> None:
    async with BearerVerifier(auth_server.issuer, RESOURCE, refetch_cooldown=0) as verifier:
        await verifier.verify(auth_server.sign())
        stranger = ec_key("key-unknown")

        description = await rejection(verifier, auth_server.sign(key=stranger))

    assert description == "No trusted key matches the access token kid"
    # The unknown kid caused one refetch, which did not bring the key either.
    assert auth_server.jwks_requests == 2


async def test_unknown_kid_refetch_waits_for_cooldown(auth_server: AuthServerStub) -> None:
    async with BearerVerifier(auth_server.issuer, RESOURCE, refetch_cooldown=3600) as verifier:
        await verifier.verify(auth_server.sign())
        for kid in ("stranger-1", "stranger-2", "stranger-3"):
            await rejection(verifier, auth_server.sign(key=ec_key(kid)))

    assert auth_server.jwks_requests == 1


async def test_key_rotation_fetches_jwks_once(auth_server: AuthServerStub) -> None:
    async with BearerVerifier(auth_server.issuer, RESOURCE, refetch_cooldown=0) as verifier:
        await verifier.verify(auth_server.sign())
        assert auth_server.jwks_requests == 1

        rotated = ec_key("key-2")
        auth_server.keys = [rotated, *auth_server.keys]
        token = auth_server.sign(key=rotated)
        results = await asyncio.gather(*(verifier.verify(token) for _ in range(100)))

    assert auth_server.jwks_requests == 2
    assert {result.subject for result in results} == {"alice"}
    assert len(results) == 100


async def test_verify_rejects_wrong_issuer(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    token = auth_server.sign(iss=auth_server.issuer + "/")

    assert await rejection(verifier, token) == "The access token issuer is not trusted"


async def test_verify_rejects_wrong_audience(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    token = auth_server.sign(aud="https://rs.example/other")

    assert await rejection(verifier, token) == "The access token audience does not include this resource"


async def test_verify_rejects_audience_list_without_resource(
    auth_server: AuthServerStub, verifier: BearerVerifier
) -> None:
    token = auth_server.sign(aud=["https://a.example", "https://b.example"])

    assert await rejection(verifier, token) == "The access token audience does not include this resource"


async def test_verify_rejects_expired_token(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    token = auth_server.sign(exp=int(time.time()) - 31)

    assert await rejection(verifier, token) == "The access token expired"


async def test_verify_rejects_future_nbf(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    token = auth_server.sign(nbf=int(time.time()) + 120)

    assert await rejection(verifier, token) == "The access token is not valid yet"


async def test_verify_rejects_future_iat(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    token = auth_server.sign(iat=int(time.time()) + 120)

    assert await rejection(verifier, token) == "The access token issue time is invalid"


@pytest.mark.parametrize("claim", ["iss", "aud", "exp", "iat", "sub", "jti", "client_id"])
async def test_verify_rejects_missing_claim(auth_server: AuthServerStub, verifier: BearerVerifier, claim: str) -> None:
    token = auth_server.sign(**{claim: None})

    assert await rejection(verifier, token) == "The access token lacks a required claim"


@pytest.mark.parametrize(
    "typ",
    [pytest.param("JWT", id="JWT"), pytest.param(None, id="missing"), pytest.param("id_token+jwt", id="other")],
)
async def test_verify_rejects_other_type(auth_server: AuthServerStub, verifier: BearerVerifier, typ: str | None) -> None:
    key = auth_server.keys[0]
    header = {"alg": "ES256", "kid": key.kid}
    if typ is not None:
        header["typ"] = typ
    token = jwt.encode(header, auth_server.claims(), key, algorithms=["ES256"])

    assert await rejection(verifier, token) == "The access token type is not at+jwt"


async def test_verify_accepts_application_type_prefix(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    token = auth_server.sign(header={"typ": "application/at+jwt"})

    verified = await verifier.verify(token)

    assert verified.subject == "alice"


async def test_verify_rejects_alg_none(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    header = b64url(json.dumps({"alg": "none", "typ": "at+jwt", "kid": "key-1"}).encode())
    payload = b64url(json.dumps(auth_server.claims()).encode())

    assert await rejection(verifier, f"{header}.{payload}.") == "The access token algorithm is not accepted"


async def test_verify_rejects_hs256_with_public_key(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    # The classic key-confusion attack: an HMAC over the token with the
    # published public key as the secret.
    public_jwk = json.dumps(auth_server.keys[0].as_dict(private=False)).encode()
    header = b64url(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": "key-1"}).encode())
    payload = b64url(json.dumps(auth_server.claims()).encode())
    mac = hmac.new(public_jwk, f"{header}.{payload}".encode(), hashlib.sha256).digest()

    assert await rejection(verifier, f"{header}.{payload}.{b64url(mac)}") == "The access token algorithm is not accepted"


async def test_verify_rejects_alg_key_mismatch(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    # RS256 is an accepted algorithm, but key-1 is an EC key published for ES256.
    header = b64url(json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": "key-1"}).encode())
    payload = b64url(json.dumps(auth_server.claims()).encode())

    description = await rejection(verifier, f"{header}.{payload}.{b64url(b'x' * 256)}")

    assert description == "The access token key does not allow its algorithm"


async def test_verify_rejects_missing_kid(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    key = auth_server.keys[0]
    token = jwt.encode({"alg": "ES256", "typ": "at+jwt"}, auth_server.claims(), key, algorithms=["ES256"])

    assert await rejection(verifier, token) == "The access token has no kid header"


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("abc", id="one-part"),
        pytest.param("a.b.c", id="bad-base64"),
        pytest.param("é.é.é", id="non-ascii"),
    ],
)
async def test_verify_rejects_malformed_token(verifier: BearerVerifier, token: str) -> None:
    assert await rejection(verifier, token) == "The access token is malformed"


async def test_verify_rejects_missing_scope(auth_server: AuthServerStub) -> None:
    token = auth_server.sign(scope="read")
    async with BearerVerifier(auth_server.issuer, RESOURCE, required_scopes=["mcp", "admin"]) as verifier:
        with pytest.raises(InsufficientScope) as caught:
            await verifier.verify(token)

    assert caught.value.error == "insufficient_scope"
    assert caught.value.status == 403
    assert caught.value.scope == "mcp admin"
    assert caught.value.description == "The access token lacks a required scope"


async def test_verify_scopes_override(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    token = auth_server.sign(scope="read")

    verified = await verifier.verify(token, required_scopes=["read"])

    assert verified.scopes == ("read",)


# --- key set failures --------------------------------------------------------


async def test_failed_refresh_keeps_last_key_set(auth_server: AuthServerStub) -> None:
    async with BearerVerifier(auth_server.issuer, RESOURCE, jwks_cache_ttl=0, refetch_cooldown=0) as verifier:
        await verifier.verify(auth_server.sign())
        auth_server.jwks_status = 500

        verified = await verifier.verify(auth_server.sign())

        assert verified.subject == "alice"
        assert verifier.keys.fetch_errors == 1
        assert auth_server.jwks_requests == 2


async def test_unreachable_key_set_is_unavailable(auth_server: AuthServerStub) -> None:
    auth_server.jwks_status = 503
    async with BearerVerifier(auth_server.issuer, RESOURCE) as verifier:
        with pytest.raises(KeySetUnavailable):
            await verifier.verify(auth_server.sign())
        # The backoff delays the next attempt, so no second request is made.
        with pytest.raises(KeySetUnavailable):
            await verifier.verify(auth_server.sign())

    assert auth_server.jwks_requests == 1


async def test_deeply_nested_key_set_is_unavailable(auth_server: AuthServerStub) -> None:
    # json.loads raises RecursionError, not ValueError, on such a document.
    auth_server.jwks_body = DEEP_JSON
    async with BearerVerifier(auth_server.issuer, RESOURCE) as verifier:
        for _ in range(3):
            with pytest.raises(KeySetUnavailable):
                await verifier.verify(auth_server.sign())

        # A bad response like any other: the backoff delays the next attempt.
        assert verifier.keys.fetch_errors == 1
    assert auth_server.jwks_requests == 1


async def test_metadata_for_other_issuer_is_rejected(auth_server: AuthServerStub) -> None:
    auth_server.metadata_issuer = "https://evil.example"
    async with BearerVerifier(auth_server.issuer, RESOURCE) as verifier:
        with pytest.raises(KeySetUnavailable):
            await verifier.verify(auth_server.sign())

    assert auth_server.jwks_requests == 0


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param({"issuer": "as.example", "audience": RESOURCE}, id="issuer-not-url"),
        pytest.param({"issuer": "https://as.example", "audience": ""}, id="empty-audience"),
        pytest.param({"issuer": "https://as.example", "audience": RESOURCE, "algorithms": ["HS256"]}, id="hs256"),
        pytest.param({"issuer": "https://as.example", "audience": RESOURCE, "algorithms": ["none"]}, id="none"),
        pytest.param({"issuer": "https://as.example", "audience": RESOURCE, "required_scopes": "mcp"}, id="scope-str"),
        pytest.param({"issuer": "https://as.example", "audience": RESOURCE, "required_scopes": ['a"b']}, id="quote"),
    ],
)
def test_verifier_invalid_arguments(arguments: dict[str, typing.Any]) -> None:
    with pytest.raises(ValueError):
        BearerVerifier(**arguments)


# --- aiohttp middleware ------------------------------------------------------


async def whoami(request: web.Request) -> web.Response:
    token = request[TOKEN_KEY]
    return web.json_response({"sub": token.subject, "client_id": token.client_id})


async def empty_metadata(request: web.Request) -> web.Response:
    return web.json_response({})


@pytest.fixture
async def protected_client(
    aiohttp_client: typing.Any, verifier: BearerVerifier
) -> typing.Any:
    middleware = bearer_auth_middleware(
        verifier,
        resource_metadata_url=METADATA_URL,
        exempt_paths=["/.well-known/oauth-protected-resource/mcp"],
    )
    app = web.Application(middlewares=[middleware])
    app.router.add_get("/mcp", whoami)
    app.router.add_get("/.well-known/oauth-protected-resource/mcp", empty_metadata)
    return await aiohttp_client(app)


async def test_middleware_passes_valid_token(auth_server: AuthServerStub, protected_client: typing.Any) -> None:
    response = await protected_client.get("/mcp", headers={"Authorization": f"Bearer {auth_server.sign()}"})

    assert response.status == 200
    assert await response.json() == {"sub": "alice", "client_id": "client-1"}


async def test_middleware_scheme_is_case_insensitive(auth_server: AuthServerStub, protected_client: typing.Any) -> None:
    response = await protected_client.get("/mcp", headers={"Authorization": f"bEARER {auth_server.sign()}"})

    assert response.status == 200


async def test_middleware_missing_token(protected_client: typing.Any) -> None:
    response = await protected_client.get("/mcp")

    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == f'Bearer resource_metadata="{METADATA_URL}"'


async def test_middleware_other_scheme_counts_as_missing(protected_client: typing.Any) -> None:
    response = await protected_client.get("/mcp", headers={"Authorization": "Basic YWxpY2U6cHc="})

    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == f'Bearer resource_metadata="{METADATA_URL}"'


async def test_middleware_invalid_token(auth_server: AuthServerStub, protected_client: typing.Any) -> None:
    token = auth_server.sign(exp=int(time.time()) - 3600)

    response = await protected_client.get("/mcp", headers={"Authorization": f"Bearer {token}"})

    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == (
        'Bearer error="invalid_token", error_description="The access token expired", '
        f'resource_metadata="{METADATA_URL}"'
    )
    assert await response.json() == {"error": "invalid_token", "error_description": "The access token expired"}


async def test_middleware_insufficient_scope(auth_server: AuthServerStub, protected_client: typing.Any) -> None:
    token = auth_server.sign(scope="read")

    response = await protected_client.get("/mcp", headers={"Authorization": f"Bearer {token}"})

    assert response.status == 403
    assert response.headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", error_description="The access token lacks a required scope", '
        f'scope="mcp", resource_metadata="{METADATA_URL}"'
    )


async def test_middleware_rejects_query_token(auth_server: AuthServerStub, protected_client: typing.Any) -> None:
    response = await protected_client.get("/mcp", params={"access_token": auth_server.sign()})

    assert response.status == 400
    assert response.headers["WWW-Authenticate"] == (
        'Bearer error="invalid_request", '
        'error_description="Access tokens in the query string are not accepted", '
        f'resource_metadata="{METADATA_URL}"'
    )


async def test_middleware_rejects_malformed_header(protected_client: typing.Any) -> None:
    response = await protected_client.get("/mcp", headers={"Authorization": "Bearer a b"})

    assert response.status == 400
    assert response.headers["WWW-Authenticate"] == (
        'Bearer error="invalid_request", '
        'error_description="The Authorization header has no valid bearer token", '
        f'resource_metadata="{METADATA_URL}"'
    )


async def test_middleware_exempt_path(protected_client: typing.Any) -> None:
    response = await protected_client.get("/.well-known/oauth-protected-resource/mcp")

    assert response.status == 200


@pytest.mark.parametrize(("status", "body"), [(500, None), (200, DEEP_JSON)], ids=["http-500", "deep-json"])
async def test_middleware_key_set_unavailable(
    aiohttp_client: typing.Any, auth_server: AuthServerStub, status: int, body: str | None
) -> None:
    auth_server.jwks_status = status
    auth_server.jwks_body = body
    async with BearerVerifier(auth_server.issuer, RESOURCE) as verifier:
        app = web.Application(middlewares=[bearer_auth_middleware(verifier, resource_metadata_url=METADATA_URL)])
        app.router.add_get("/mcp", whoami)
        client = await aiohttp_client(app)

        response = await client.get("/mcp", headers={"Authorization": f"Bearer {auth_server.sign()}"})

    assert response.status == 503
    assert "WWW-Authenticate" not in response.headers


# --- ASGI middleware ---------------------------------------------------------


async def starlette_whoami(request: Request) -> JSONResponse:
    token = request.scope[SCOPE_KEY]
    return JSONResponse({"sub": token.subject, "scopes": list(token.scopes)})


@pytest.fixture
def asgi_client(verifier: BearerVerifier) -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/mcp", starlette_whoami), Route("/open", lambda request: JSONResponse({}))])
    protected = BearerAuthMiddleware(app, verifier, resource_metadata_url=METADATA_URL, exempt_paths=["/open"])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=protected), base_url="https://rs.example")


async def test_asgi_passes_valid_token(auth_server: AuthServerStub, asgi_client: httpx.AsyncClient) -> None:
    async with asgi_client:
        response = await asgi_client.get("/mcp", headers={"Authorization": f"Bearer {auth_server.sign()}"})

    assert response.status_code == 200
    assert response.json() == {"sub": "alice", "scopes": ["mcp", "read"]}


async def test_asgi_missing_token(asgi_client: httpx.AsyncClient) -> None:
    async with asgi_client:
        response = await asgi_client.get("/mcp")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == f'Bearer resource_metadata="{METADATA_URL}"'
    assert response.text == "A bearer token is required."


async def test_asgi_invalid_token(auth_server: AuthServerStub, asgi_client: httpx.AsyncClient) -> None:
    token = auth_server.sign(aud="https://rs.example/other")

    async with asgi_client:
        response = await asgi_client.get("/mcp", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        'Bearer error="invalid_token", '
        'error_description="The access token audience does not include this resource", '
        f'resource_metadata="{METADATA_URL}"'
    )
    assert token not in response.text


async def test_asgi_insufficient_scope(auth_server: AuthServerStub, asgi_client: httpx.AsyncClient) -> None:
    token = auth_server.sign(scope="")

    async with asgi_client:
        response = await asgi_client.get("/mcp", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", error_description="The access token lacks a required scope", '
        f'scope="mcp", resource_metadata="{METADATA_URL}"'
    )


async def test_asgi_exempt_path(asgi_client: httpx.AsyncClient) -> None:
    async with asgi_client:
        response = await asgi_client.get("/open")

    assert response.status_code == 200


def test_asgi_websocket_without_token() -> None:
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()

    verifier = BearerVerifier("https://as.example", "wss://rs.example/ws")
    app = BearerAuthMiddleware(Starlette(routes=[WebSocketRoute("/ws", echo)]), verifier, resource_metadata_url=None)

    with TestClient(app) as client:
        with pytest.raises(WebSocketDisconnect) as caught:
            with client.websocket_connect("/ws"):
                pass

    assert caught.value.code == 1008


# --- MCP SDK adapter ---------------------------------------------------------


async def test_mcp_verifier_fills_access_token(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    claims = auth_server.claims()
    token = auth_server.sign(**claims)

    access = await MCPTokenVerifier(verifier).verify_token(token)

    assert access == AccessToken(
        token=token,
        client_id="client-1",
        scopes=["mcp", "read"],
        expires_at=claims["exp"],
        resource=RESOURCE,
        subject="alice",
        claims=claims,
    )


async def test_mcp_verifier_leaves_scopes_to_sdk(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    # The SDK itself responds with 403 insufficient_scope when a scope of
    # AuthSettings.required_scopes is missing; the verifier's required_scopes
    # (["mcp"] here) are not checked, as docs/resource.md states.
    assert verifier.required_scopes == ("mcp",)
    access = await MCPTokenVerifier(verifier).verify_token(auth_server.sign(scope="read"))

    assert access is not None
    assert access.scopes == ["read"]


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"exp": 1}, id="expired"),
        pytest.param({"aud": "https://rs.example/other"}, id="audience"),
        pytest.param({"iss": "https://evil.example"}, id="issuer"),
    ],
)
async def test_mcp_verifier_rejects_bad_token(
    auth_server: AuthServerStub, verifier: BearerVerifier, overrides: dict[str, typing.Any]
) -> None:
    assert await MCPTokenVerifier(verifier).verify_token(auth_server.sign(**overrides)) is None


async def test_mcp_verifier_rejects_garbage(verifier: BearerVerifier) -> None:
    assert await MCPTokenVerifier(verifier).verify_token("not-a-token") is None


# --- example MCP server ------------------------------------------------------


def load_example() -> typing.Any:
    spec = importlib.util.spec_from_file_location("example_mcp_server", REPO / "examples" / "mcp_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_example_server_challenge() -> None:
    example = load_example()
    issuer = "http://127.0.0.1:8080"
    resource = example.resource_url("127.0.0.1", 9000)
    async with BearerVerifier(issuer, resource, required_scopes=["mcp"]) as verifier:
        server = example.build_server(issuer, resource, ["mcp"], verifier)
        app = server.streamable_http_app(host="127.0.0.1")
        transport = httpx.ASGITransport(app=app)

        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:9000") as client:
            challenge = await client.post("/mcp", json={})
            metadata = await client.get("/.well-known/oauth-protected-resource/mcp")

    assert challenge.status_code == 401
    assert challenge.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="Authentication required", '
        'resource_metadata="http://127.0.0.1:9000/.well-known/oauth-protected-resource/mcp"'
    )
    assert metadata.status_code == 200
    assert metadata.json()["resource"] == "http://127.0.0.1:9000/mcp"
    assert metadata.json()["authorization_servers"] == ["http://127.0.0.1:8080"]
    assert metadata.json()["scopes_supported"] == ["mcp"]
