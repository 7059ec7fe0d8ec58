"""A fault-injecting upstream identity provider for tests, served by aiohttp on loopback.

It serves OpenID Connect discovery metadata and a JWKS, and counts requests.
On demand, the JWKS endpoint fails with an HTTP error status (with
``Retry-After`` for 429), a response slower than the client's timeout, or a
body that is not a key set. Tests sign their own tokens with its keys. For
remote mode it also serves a token endpoint (codes that tests issue, bound to
the PKCE challenge and nonce of frontauth's request) and a userinfo endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
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
        # Token endpoint of remote mode: issued codes, their faults, and counters.
        self.client_id = "frontauth-at-idp"
        self.codes: dict[str, dict[str, typing.Any]] = {}
        self.token_fault: str | None = None  # "500", "invalid_grant", "no_id_token"
        self.id_token_overrides: dict[str, typing.Any] = {}
        self.expires_in = 3600
        self.refresh_requests = 0
        self.refresh_fault = False
        self.userinfo_claims: dict[str, typing.Any] = {"name": "Alice Upstream", "email": "alice@idp.example"}
        self.userinfo_fault = False

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self.openid_configuration)
        app.router.add_get("/.well-known/oauth-authorization-server", self.oauth_metadata)
        app.router.add_get("/jwks", self.jwks)
        app.router.add_post("/token", self.token)
        app.router.add_get("/userinfo", self.userinfo)
        return app

    def issue_code(self, authorization_params: dict[str, str], subject: str = "alice") -> str:
        """Record a code as the provider's sign-in would, bound to the request's PKCE challenge and nonce."""
        code = f"code-{len(self.codes)}"
        self.codes[code] = {**authorization_params, "sub": subject}
        return code

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") == "refresh_token":
            self.refresh_requests += 1
            await asyncio.sleep(0.05)  # let concurrent readers pile up behind one refresh
            if self.refresh_fault:
                return web.json_response({"error": "invalid_grant"}, status=400)
            return web.json_response({"access_token": f"at-refreshed-{self.refresh_requests}",
                                      "token_type": "Bearer", "expires_in": self.expires_in})
        if self.token_fault == "500":
            return web.Response(status=500, text="internal error")
        granted = self.codes.pop(str(form.get("code")), None)
        if self.token_fault == "invalid_grant" or granted is None:
            return web.json_response({"error": "invalid_grant"}, status=400)
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if challenge != granted["code_challenge"] or form.get("redirect_uri") != granted["redirect_uri"]:
            return web.json_response({"error": "invalid_grant"}, status=400)
        now = int(time.time())
        id_claims = {"iss": self.issuer, "sub": granted["sub"], "aud": self.client_id, "exp": now + 300,
                     "iat": now, "nonce": granted["nonce"], **self.id_token_overrides}
        key = self.keys[0]
        id_token = jwt.encode({"alg": "ES256", "kid": key.kid, "typ": "JWT"},
                              {k: v for k, v in id_claims.items() if v is not None}, key, algorithms=["ES256"])
        body = {"access_token": "at-initial", "token_type": "Bearer", "expires_in": self.expires_in,
                "refresh_token": "rt-initial", "scope": granted.get("scope", "")}
        if self.token_fault != "no_id_token":
            body["id_token"] = id_token
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def userinfo(self, request: web.Request) -> web.Response:
        if self.userinfo_fault or not request.headers.get("Authorization", "").startswith("Bearer at-"):
            return web.json_response({"error": "invalid_token"}, status=401)
        return web.json_response({"sub": "alice", **self.userinfo_claims})

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
