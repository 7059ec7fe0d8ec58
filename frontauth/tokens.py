"""Opaque credentials (codes, refresh tokens, session ids) and JWT access tokens.

Opaque credentials are 256-bit random strings. Storage only ever receives their
SHA-256 digest, so a copy of the database hands out no working credential.
Access tokens are JWTs in the RFC 9068 profile, signed by the current key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
import time
import typing

import attrs
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwt

from frontauth import fastjson
from frontauth.keys import SigningKeys


def new_opaque() -> str:
    """Return a new random credential: 32 bytes, base64url without padding."""
    return secrets.token_urlsafe(32)


def new_id() -> str:
    """Return a new random identifier (jti, family id): 128 bits as 32 hex digits."""
    return os.urandom(16).hex()


# The translation of binascii's base64 alphabet to base64url (RFC 4648 §5).
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def digest(credential: str) -> str:
    """Return the storage key part for a credential: base64url(SHA-256), no padding."""
    raw = hashlib.sha256(credential.encode("utf-8", "surrogatepass")).digest()
    # 32 bytes encode to 43 characters and one "=" of padding, which is cut.
    return binascii.b2a_base64(raw, newline=False)[:43].translate(_URLSAFE).decode("ascii")


@attrs.frozen
class AccessToken:
    token: str = attrs.field(repr=False)
    jti: str
    expires_in: int
    expires_at: int


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class CompactSigner:
    """Sign JWS compact serialisations (RFC 7515 §7.1) with one key and a fixed header.

    The header segment is encoded once; each call encodes the claims, signs
    ``header.payload`` and appends the signature. ES256 signatures are the raw
    ``r || s`` pair of RFC 7518 §3.4, not the DER form OpenSSL returns.
    Tokens signed here verify with any JOSE library; the tests check them with
    joserfc and with the resource-side verifier.
    """

    def __init__(self, keys: SigningKeys, header: dict[str, str]) -> None:
        self._prefix = _b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
        private = keys.signing_key.private_key
        if keys.alg == "ES256" and isinstance(private, ec.EllipticCurvePrivateKey):
            self._sign = self._es256(private)
        elif keys.alg == "RS256" and isinstance(private, rsa.RSAPrivateKey):
            self._sign = lambda data: private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        elif keys.alg == "EdDSA" and isinstance(private, ed25519.Ed25519PrivateKey):
            self._sign = private.sign
        else:
            raise ValueError(f"cannot sign {keys.alg} with a {type(private).__name__}")

    @staticmethod
    def _es256(private: ec.EllipticCurvePrivateKey) -> typing.Callable[[bytes], bytes]:
        algorithm = ec.ECDSA(hashes.SHA256())

        def sign(data: bytes) -> bytes:
            r, s = decode_dss_signature(private.sign(data, algorithm))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")

        return sign

    def sign(self, claims: dict[str, typing.Any]) -> str:
        signing_input = self._prefix + _b64url(fastjson.dumps(claims))
        return signing_input + "." + _b64url(self._sign(signing_input.encode("ascii")))


class AccessTokenMinter:
    """Sign RFC 9068 access tokens with the current signing key."""

    def __init__(self, keys: SigningKeys, issuer: str, lifetime: int, clock: typing.Callable[[], float] = time.time) -> None:
        self._issuer = issuer
        self._lifetime = lifetime
        self._clock = clock
        self._signer = CompactSigner(keys, {"alg": keys.alg, "typ": "at+jwt", "kid": keys.kid})

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
        jti = new_id()
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
        token = self._signer.sign(claims)
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
