"""A fault-injecting upstream identity provider for tests, served by aiohttp on loopback.

It serves OpenID Connect discovery metadata and a JWKS, counts requests, and
can make the JWKS endpoint fail on demand: an HTTP error status (with
``Retry-After`` for 429), a response slower than the client's timeout, or a
body that is not a key set. Tests sign their own tokens with its keys.
"""

from __future__ import annotations

import asyncio
import time
import typing

from aiohttp import web
from joserfc import jwt
from joserfc.jwk import ECKey, Key

RESOURCE = "https://rs.example/mcp"

# JWKS behaviours: "ok", an HTTP status as a string ("500", "429"), "timeout" or "garbage".
JwksFault = str


def ec_key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid, "alg": "ES256", "use": "sig"})


class FakeClock:
    """A monotonic clock that moves only when a test calls :meth:`advance`."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class UpstreamStub:
    """Metadata and JWKS endpoints of an identity provider, with request counters and faults."""

    def __init__(self) -> None:
        self.keys: list[Key] = [ec_key("key-1")]
        self.issuer = ""
        self.jwks_fault: JwksFault = "ok"
        self.retry_after: str | None = None
        self.jwks_delay = 0.0
        self.jwks_requests = 0
        self.metadata_requests = 0
        self.oidc_metadata = True
        self.extra_metadata: dict[str, typing.Any] = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self.openid_configuration)
        app.router.add_get("/.well-known/oauth-authorization-server", self.oauth_metadata)
        app.router.add_get("/jwks", self.jwks)
        return app

    def metadata(self) -> dict[str, typing.Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            **self.extra_metadata,
        }

    async def openid_configuration(self, request: web.Request) -> web.Response:
        self.metadata_requests += 1
        if not self.oidc_metadata:
            raise web.HTTPNotFound()
        return web.json_response(self.metadata())

    async def oauth_metadata(self, request: web.Request) -> web.Response:
        self.metadata_requests += 1
        return web.json_response(self.metadata())

    async def jwks(self, request: web.Request) -> web.StreamResponse:
        self.jwks_requests += 1
        # Let concurrent verifications pile up behind one fetch.
        await asyncio.sleep(self.jwks_delay)
        if self.jwks_fault == "timeout":
            await asyncio.sleep(30)
        if self.jwks_fault == "garbage":
            return web.Response(body=b"<html>maintenance</html>", content_type="text/html")
        if self.jwks_fault != "ok":
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return web.json_response({"error": "unavailable"}, status=int(self.jwks_fault), headers=headers)
        return web.json_response({"keys": [key.as_dict(private=False) for key in self.keys]})

    def rotate(self, kid: str) -> Key:
        """Replace the signing keys with a new one, as a provider does at rotation."""
        key = ec_key(kid)
        self.keys = [key]
        return key

    def claims(self, **overrides: typing.Any) -> dict[str, typing.Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": "alice",
            "aud": RESOURCE,
            "exp": now + 300,
            "iat": now,
            "jti": "token-1",
            "client_id": "client-1",
            "scope": "mcp read",
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def sign(self, key: Key | None = None, typ: str | None = "at+jwt", **claims: typing.Any) -> str:
        key = key if key is not None else self.keys[0]
        header = {"alg": "ES256", "kid": key.kid}
        if typ is not None:
            header["typ"] = typ
        return jwt.encode(header, self.claims(**claims), key, algorithms=["ES256"])


async def serve_stub(aiohttp_server: typing.Any, stub: UpstreamStub | None = None) -> UpstreamStub:
    """Start the stub on a loopback port and set its issuer to that address."""
    stub = stub or UpstreamStub()
    server = await aiohttp_server(stub.app())
    stub.issuer = f"http://{server.host}:{server.port}"
    return stub
