"""A bare aiohttp token endpoint: parse the form, sign an ES256 JWT, answer JSON.

This is the ceiling of one token request on frontauth's stack (aiohttp on the
default asyncio event loop, joserfc for JOSE): no storage, no client lookup and
no checks beyond the grant type. The benchmark sends it the same refresh
requests it sends the real servers.

Usage: python bare_token.py PORT
"""

from __future__ import annotations

import json
import secrets
import sys
import time
import uuid

from aiohttp import web
from joserfc import jwt
from joserfc.jwk import ECKey

ACCESS_TOKEN_LIFETIME = 3600


def build_app(issuer: str) -> web.Application:
    key = ECKey.generate_key("P-256", parameters={"kid": "bench-es256", "alg": "ES256"})
    header = {"alg": "ES256", "typ": "at+jwt", "kid": "bench-es256"}
    no_store = {"Cache-Control": "no-store"}

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "refresh_token" or not form.get("refresh_token"):
            return web.json_response({"error": "invalid_request"}, status=400, headers=no_store)
        now = int(time.time())
        claims = {
            "iss": issuer,
            "sub": "bench-user",
            "aud": form.get("resource") or issuer + "/mcp",
            "exp": now + ACCESS_TOKEN_LIFETIME,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "client_id": form.get("client_id") or "",
            "scope": "mcp",
        }
        body = {
            "access_token": jwt.encode(header, claims, key, algorithms=["ES256"]),
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_LIFETIME,
            "refresh_token": secrets.token_urlsafe(32),
            "scope": "mcp",
        }
        return web.Response(text=json.dumps(body), content_type="application/json", headers=no_store)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_get("/healthz", healthz)
    return app


def main(port: int) -> None:
    web.run_app(build_app(f"http://127.0.0.1:{port}"), host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main(int(sys.argv[1]))
