"""Verification of JWT access tokens (RFC 9068) issued by one authorization server.

The checks, in order:

1. The token is a JWS in compact form.
2. Its header has ``typ`` ``at+jwt``, an accepted asymmetric ``alg`` and a ``kid``.
3. The key with that ``kid`` allows that algorithm and verifies the signature.
4. The claims ``iss``, ``aud``, ``exp``, ``iat`` and, if present, ``nbf`` hold.
5. The ``scope`` claim contains every required scope.

All JOSE work (parsing, signature, claim times) is done by joserfc.
"""

from __future__ import annotations

import json
import logging
import re
import time
import types
import typing
import urllib.parse
import warnings

import aiohttp
import attrs
from joserfc import jws
from joserfc.errors import (
    ClaimError,
    ExpiredTokenError,
    JoseError,
    MissingClaimError,
    SecurityWarning,
)
from joserfc.jwt import JWTClaimsRegistry

from frontauth.resource.errors import InsufficientScope, InvalidToken
from frontauth.resource.jwks import KeySetCache

logger = logging.getLogger("frontauth.resource")

# Algorithms the authorization server may sign with. Symmetric algorithms and
# "none" are never accepted: with HS256, anyone holding the published public key
# could use it as the HMAC secret and forge a token.
DEFAULT_ALGORITHMS = ("ES256", "RS256", "EdDSA")
_SUPPORTED_ALGORITHMS = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA", "Ed25519", "Ed448"}
)

# RFC 9068 §4: "at+jwt", which RFC 7515 §4.1.9 lets a sender write with the
# "application/" prefix. Media types compare case-insensitively.
_ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")

# RFC 9068 §2.2: claims every access token must carry.
_REQUIRED_CLAIMS = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti")
# Claims required of an external provider's access token, which need not follow
# RFC 9068: the rest of the rules above only needs these.
UPSTREAM_REQUIRED_CLAIMS = ("exp", "aud", "sub")
# Deviation: many identity providers (Keycloak, Microsoft Entra ID, Okta) sign
# access tokens with typ "JWT" or no typ at all. Their ID tokens stay out
# because the audience check wants the resource, and an ID token's aud is the
# client_id.
_GENERIC_JWT_TYPES = frozenset({None, "jwt", "application/jwt"})


@attrs.frozen
class VerifiedToken:
    """The claims of an access token that passed every check."""

    subject: str
    client_id: str
    scopes: tuple[str, ...]
    audience: tuple[str, ...]
    issuer: str
    expires_at: int
    issued_at: int
    token_id: str
    claims: typing.Mapping[str, typing.Any] = attrs.field(repr=False)


class BearerVerifier:
    """Verify the access tokens that one issuer mints for one resource.

    Args:
        issuer: the authorization server's issuer identifier. The ``iss`` claim
            must equal it exactly.
        audience: this resource's URL (RFC 8707 resource indicator). The ``aud``
            claim must contain it.
        required_scopes: scopes every token must carry, unless a call to
            :meth:`verify` names others.
        leeway: tolerated clock skew on ``exp``, ``nbf`` and ``iat``, in seconds.
        jwks_cache_ttl: seconds a fetched key set is used before it is fetched again.
        jwks: a fixed key set (``{"keys": [...]}``). Nothing is fetched when given.
        jwks_uri: the key set URL. When given, RFC 8414 discovery is skipped.
        session: aiohttp client session for the metadata and key set requests.
        refetch_cooldown: minimum seconds between two key set fetches.
        algorithms: accepted signature algorithms. Only asymmetric ones are allowed.
        http_timeout: seconds allowed for each metadata or key set request.
        additional_issuers: more ``iss`` values accepted besides ``issuer``.
        verify_issuer: check ``iss`` at all. Turn it off only with an audience
            that no other issuer's tokens name.
        required_claims: claims a token must carry. The default is RFC 9068's
            list; ``UPSTREAM_REQUIRED_CLAIMS`` suits other providers.
        accept_generic_jwt: also accept the header ``typ`` ``JWT`` or none.
        keys: a key set cache to share, for example the upstream provider's.
            When given, ``jwks``, ``jwks_uri``, ``session``, ``jwks_cache_ttl``,
            ``refetch_cooldown`` and ``http_timeout`` are ignored.

    Raises:
        ValueError: an argument is invalid.
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        required_scopes: typing.Iterable[str] = (),
        leeway: int = 30,
        jwks_cache_ttl: float = 300.0,
        jwks: typing.Mapping[str, typing.Any] | None = None,
        jwks_uri: str | None = None,
        session: aiohttp.ClientSession | None = None,
        refetch_cooldown: float = 30.0,
        algorithms: typing.Iterable[str] = DEFAULT_ALGORITHMS,
        http_timeout: float = 5.0,
        additional_issuers: typing.Iterable[str] = (),
        verify_issuer: bool = True,
        required_claims: typing.Iterable[str] = _REQUIRED_CLAIMS,
        accept_generic_jwt: bool = False,
        keys: KeySetCache | None = None,
    ) -> None:
        if urllib.parse.urlsplit(issuer).scheme not in ("https", "http"):
            raise ValueError(f"issuer must be an http or https URL, got {issuer!r}")
        if not audience:
            raise ValueError("audience must be this resource's URL, got an empty string")
        self.issuer = issuer
        self.issuers = (issuer, *additional_issuers)
        self.verify_issuer = verify_issuer
        self.audience = audience
        self.required_claims = tuple(required_claims)
        self._token_types = _ACCESS_TOKEN_TYPES | (_GENERIC_JWT_TYPES if accept_generic_jwt else frozenset())
        self.required_scopes = _check_scopes(required_scopes)
        if leeway < 0:
            raise ValueError(f"leeway must be 0 or more seconds, got {leeway}")
        self.leeway = leeway
        self.algorithms = tuple(algorithms)
        unsupported = sorted(set(self.algorithms) - _SUPPORTED_ALGORITHMS)
        if unsupported or not self.algorithms:
            raise ValueError(
                f"algorithms must be asymmetric JWS algorithms from {sorted(_SUPPORTED_ALGORITHMS)}, "
                f"got {list(self.algorithms)}"
            )
        self._registry = jws.JWSRegistry(algorithms=list(self.algorithms))
        self.keys = keys or KeySetCache(
            issuer,
            jwks=jwks,
            jwks_uri=jwks_uri,
            ttl=jwks_cache_ttl,
            refetch_cooldown=refetch_cooldown,
            timeout=http_timeout,
            session=session,
        )

    async def __aenter__(self) -> BearerVerifier:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if the verifier created it."""
        await self.keys.close()

    async def verify(self, token: str, required_scopes: typing.Iterable[str] | None = None) -> VerifiedToken:
        """Check an access token and return its claims.

        Args:
            token: the bearer token, as sent by the client.
            required_scopes: scopes this request needs. None uses the verifier's
                ``required_scopes``, and an empty list checks no scope.

        Returns:
            The verified claims.

        Raises:
            InvalidToken: the token fails a check other than the scope check.
            InsufficientScope: the token is valid but lacks a required scope.
            KeySetUnavailable: no key set could be loaded, so nothing can be verified.
        """
        scopes_needed = self.required_scopes if required_scopes is None else _check_scopes(required_scopes)
        signed = self._parse(token)
        header = signed.headers()
        key = await self.keys.get_key(header["kid"])
        if key is None:
            raise InvalidToken("No trusted key matches the access token kid")
        self._check_signature(signed, key)
        claims = self._check_claims(signed.payload)

        granted = tuple(claims.get("scope", "").split())
        if not set(scopes_needed) <= set(granted):
            raise InsufficientScope("The access token lacks a required scope", scope=" ".join(scopes_needed))

        audience = claims["aud"]
        return VerifiedToken(
            subject=claims["sub"],
            # azp: the OpenID Connect name for the client, which some providers use instead.
            client_id=claims.get("client_id") or claims.get("azp") or "",
            scopes=granted,
            audience=(audience,) if isinstance(audience, str) else tuple(audience),
            issuer=claims.get("iss", ""),
            expires_at=int(claims["exp"]),
            issued_at=int(claims.get("iat", 0)),
            token_id=claims.get("jti", ""),
            claims=types.MappingProxyType(claims),
        )

    def _parse(self, token: str) -> jws.CompactSignature:
        """Split the token and check its header, before any key is looked up."""
        try:
            signed = jws.extract_compact(token.encode("ascii"), registry=self._registry)
        except (JoseError, ValueError, TypeError) as exc:
            logger.debug("access token rejected: not a JWS in compact form (%s)", type(exc).__name__)
            raise InvalidToken("The access token is malformed") from None

        header = signed.headers()
        typ = header.get("typ")
        # SECURITY: RFC 9068 §4: checking typ keeps an ID token or another JWT
        # signed by the same key from being accepted as an access token.
        if typ is not None and not isinstance(typ, str):
            raise InvalidToken("The access token type is not at+jwt")
        if (typ.lower() if typ else None) not in self._token_types:
            raise InvalidToken("The access token type is not at+jwt")
        # SECURITY: only the configured asymmetric algorithms, never none or HS*.
        if header.get("alg") not in self.algorithms:
            raise InvalidToken("The access token algorithm is not accepted")
        if "crit" in header:
            raise InvalidToken("The access token has critical header parameters this resource does not support")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("The access token has no kid header")
        return signed

    def _check_signature(self, signed: jws.CompactSignature, key: typing.Any) -> None:
        try:
            # NOTE: joserfc 1.8 warns that "EdDSA" is deprecated by RFC 9864 in
            # favor of "Ed25519". frontauth still signs with "EdDSA", so the
            # warning would fire on every verification of such a token.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SecurityWarning)
                valid = jws.validate_compact(signed, key, registry=self._registry)
        except JoseError as exc:
            # The key's kty, crv, use or alg does not allow the header's algorithm.
            logger.debug("access token rejected: key does not allow its algorithm (%s)", exc.error)
            raise InvalidToken("The access token key does not allow its algorithm") from None
        if not valid:
            raise InvalidToken("The access token signature is invalid")

    def _check_claims(self, payload: bytes) -> dict[str, typing.Any]:
        try:
            claims = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            raise InvalidToken("The access token is malformed") from None
        if not isinstance(claims, dict):
            raise InvalidToken("The access token is malformed")

        options: dict[str, typing.Any] = {name: {"essential": True} for name in self.required_claims}
        options["aud"] = {"essential": True, "value": self.audience}
        if self.verify_issuer:
            options["iss"] = {"essential": True, "values": list(self.issuers)}
        registry = JWTClaimsRegistry(leeway=self.leeway, **options)
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise InvalidToken("The access token expired") from None
        except MissingClaimError:
            raise InvalidToken("The access token lacks a required claim") from None
        except ClaimError as exc:
            raise InvalidToken(_CLAIM_DESCRIPTIONS.get(exc.claim, "The access token has an invalid claim")) from None

        for name in ("client_id", "azp", "sub", "jti", "iss"):
            if name in claims and not isinstance(claims[name], str):
                raise InvalidToken("The access token has an invalid claim")
        if not isinstance(claims.get("scope", ""), str):
            raise InvalidToken("The access token has an invalid claim")
        return claims


_CLAIM_DESCRIPTIONS = {
    "iss": "The access token issuer is not trusted",
    "aud": "The access token audience does not include this resource",
    "nbf": "The access token is not valid yet",
    "iat": "The access token issue time is invalid",
    "exp": "The access token expiry time is invalid",
}


def _check_scopes(scopes: typing.Iterable[str]) -> tuple[str, ...]:
    if isinstance(scopes, str):
        raise ValueError(f"scopes must be a list of scope names, got the string {scopes!r}")
    checked = tuple(scopes)
    for scope in checked:
        if not _SCOPE_TOKEN.fullmatch(scope):
            raise ValueError(f"scope {scope!r} is not an RFC 6749 §3.3 scope-token")
    return checked
