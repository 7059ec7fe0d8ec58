"""A bare aiohttp token endpoint: parse the form, sign an ES256 JWT, answer JSON.

This is the ceiling of one token request on frontauth's stack: aiohttp on
uvloop when it is installed (frontauth's default event loop), and ES256 signed
by the cryptography package with the header segment encoded once, as
frontauth signs. It has no storage, no client lookup and no checks beyond the
grant type. The benchmark sends it the same refresh requests it sends the
real servers.

Usage: python bare_token.py PORT
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import sys
import time

from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ACCESS_TOKEN_LIFETIME = 3600


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def build_app(issuer: str) -> web.Application:
    key = ec.generate_private_key(ec.SECP256R1())
    algorithm = ec.ECDSA(hashes.SHA256())
    header = b64url(json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": "bench-es256"}).encode())
    no_store = {"Cache-Control": "no-store"}

    def sign(claims: dict[str, object]) -> str:
        signing_input = header + "." + b64url(json.dumps(claims, separators=(",", ":")).encode())
        r, s = decode_dss_signature(key.sign(signing_input.encode("ascii"), algorithm))
        return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

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
            "jti": os.urandom(16).hex(),
            "client_id": form.get("client_id") or "",
            "scope": "mcp",
        }
        body = {
            "access_token": sign(claims),
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
    try:
        import uvloop
    except ImportError:
        loop = None
    else:
        loop = uvloop.new_event_loop()
    if loop is not None:
        asyncio.set_event_loop(loop)
    web.run_app(build_app(f"http://127.0.0.1:{port}"), host="127.0.0.1", port=port, access_log=None, print=None,
                loop=loop)


if __name__ == "__main__":
    main(int(sys.argv[1]))
