"""Opaque credentials (codes, refresh tokens, session ids) and JWT access tokens.

Opaque credentials are 256-bit random strings. Storage only ever receives their
SHA-256 digest, so a copy of the database hands out no working credential.
Access tokens are JWTs in the RFC 9068 profile, signed by the current key.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import typing
import uuid

import attrs
from joserfc import jwt

from frontauth.keys import SigningKeys


def new_opaque() -> str:
    """Return a new random credential: 32 bytes, base64url without padding."""
    return secrets.token_urlsafe(32)


def digest(credential: str) -> str:
    """Return the storage key part for a credential: base64url(SHA-256), no padding."""
    raw = hashlib.sha256(credential.encode("utf-8", "surrogatepass")).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@attrs.frozen
class AccessToken:
    token: str = attrs.field(repr=False)
    jti: str
    expires_in: int
    expires_at: int


class AccessTokenMinter:
    """Sign RFC 9068 access tokens with the current signing key."""

    def __init__(self, keys: SigningKeys, issuer: str, lifetime: int, clock: typing.Callable[[], float] = time.time) -> None:
        self._keys = keys
        self._issuer = issuer
        self._lifetime = lifetime
        self._clock = clock
        self._header = {"alg": keys.alg, "typ": "at+jwt", "kid": keys.kid}

    def mint(
        self,
        *,
        subject: str,
        client_id: str,
        scope: str,
        audience: str,
        family_id: str | None,
        auth_time: int | None,
    ) -> AccessToken:
        """Sign a new access token.

        RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat and jti are required;
        scope carries the granted scopes. ``fid`` names the refresh-token family
        (the grant) so that introspection can refuse the token once the family
        is revoked.
        """
        now = int(self._clock())
        jti = uuid.uuid4().hex
        claims: dict[str, typing.Any] = {
            "iss": self._issuer,
            "sub": subject,
            "aud": audience,
            "exp": now + self._lifetime,
            "iat": now,
            "nbf": now,
            "jti": jti,
            "client_id": client_id,
            "scope": scope,
        }
        if auth_time is not None:
            claims["auth_time"] = auth_time
        if family_id is not None:
            claims["fid"] = family_id
        token = jwt.encode(self._header, claims, self._keys.signing_key, algorithms=[self._keys.alg])
        return AccessToken(token=token, jti=jti, expires_in=self._lifetime, expires_at=now + self._lifetime)


def decode_access_token(keys: SigningKeys, issuer: str, token: str, leeway: int, now: float | None = None) -> dict[str, typing.Any] | None:
    """Return the claims of an access token this server signed and that is still valid.

    Returns None for anything else: malformed, another type, an unknown key,
    a bad signature, another issuer, expired or not yet valid.
    """
    if not token or len(token) > 8192 or token.count(".") != 2:
        return None
    try:
        decoded = jwt.decode(token, keys.verify_keys, algorithms=[entry["alg"] for entry in keys.public_jwks["keys"]])
    except Exception:  # joserfc raises many error types for malformed or forged tokens
        return None
    if decoded.header.get("typ") != "at+jwt":
        return None
    claims = decoded.claims
    current = time.time() if now is None else now
    exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
    if claims.get("iss") != issuer or not isinstance(exp, int) or exp + leeway < current:
        return None
    if isinstance(nbf, int) and nbf - leeway > current:
        return None
    if not isinstance(claims.get("jti"), str) or not isinstance(claims.get("client_id"), str):
        return None
    return dict(claims)
