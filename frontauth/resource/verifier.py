"""Verification of JWT access tokens (RFC 9068) issued by one authorization server.

The checks, in order:

1. The token is a JWS in compact form.
2. Its header has ``typ`` ``at+jwt``, an accepted asymmetric ``alg`` and a ``kid``.
3. The key with that ``kid`` allows that algorithm and verifies the signature.
4. The claims ``iss``, ``aud``, ``exp``, ``iat`` and, if present, ``nbf`` hold.
5. The token is not revoked as far as the verifier knows (see revocation.py),
   and, with introspection on, the authorization server has not revoked it
   (see introspection.py).
6. The ``scope`` claim contains every required scope.

A token that passes steps 1 to 4 is kept in the verified-token cache
(token_cache.py). Later uses of the same token skip steps 1 to 3 and the
parsing of the claims. They still check ``exp``, ``nbf`` and ``iat`` with the
same rule and leeway, and check that the key of its ``kid`` is still the key
that verified it. Steps 5 and 6 run on every use.

All JOSE work (parsing, signature, claim times on a first use) is done by joserfc.
"""

from __future__ import annotations

import json
import logging
import math
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

from frontauth.resource.errors import InsufficientScope, IntrospectionUnavailable, InvalidToken
from frontauth.resource.introspection import Introspection, Introspector
from frontauth.resource.jwks import Clock, KeySetCache
from frontauth.resource.revocation import RevocationList, token_forget_time, unverified_claims
from frontauth.resource.token_cache import CacheEntry, VerifiedTokenCache, signing_input_digest, token_digest

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

# Default number of verified tokens kept. An entry of a frontauth token took
# 2.4 KB in a tracemalloc measurement (the claims dict dominates), so a full
# cache of this size takes about 24 MB.
DEFAULT_TOKEN_CACHE_SIZE = 10_000
# Default seconds a revocation without a known expiry is remembered. It must be
# at least the lifetime of the access tokens. frontauth issues 1 h tokens in the
# development profile and 15 min tokens in production.
DEFAULT_REVOCATION_RETENTION = 86_400.0
# Distinct per-call scope lists whose validation is remembered.
_SCOPE_MEMO_SIZE = 64


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
            When given, ``jwks``, ``jwks_uri``, ``jwks_cache_ttl``,
            ``refetch_cooldown`` and ``http_timeout`` are ignored.
        token_cache_size: maximum number of verified tokens remembered, least
            recently used first out. 0 turns the verified-token cache off.
        introspection: ask the authorization server whether a token is still
            active (RFC 7662), at most once per ``introspection.interval`` per
            token. None (the default) never asks.
        revocation_retention: seconds a revocation passed to :meth:`revoke`
            without an expiry is remembered. It must be at least the lifetime
            of the access tokens.
        clock: wall-clock time in seconds since the epoch, for ``exp``,
            ``nbf`` and ``iat`` and the forget times of revocations; tests pass
            a clock they move.
        monotonic_clock: monotonic time in seconds, for intervals: how long an
            ``active`` introspection response is trusted, the backoff after a
            failed introspection, and the key set's ttl, cool-down and backoff
            (unless ``keys`` is given). A step of the wall clock (an NTP
            correction) does not move it; tests pass a clock they move.

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
        token_cache_size: int = DEFAULT_TOKEN_CACHE_SIZE,
        introspection: Introspection | None = None,
        revocation_retention: float = DEFAULT_REVOCATION_RETENTION,
        clock: Clock = time.time,
        monotonic_clock: Clock = time.monotonic,
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
        self._scope_sets: dict[tuple[str, ...], tuple[tuple[str, ...], frozenset[str]]] = {}
        self._default_scopes = (self.required_scopes, frozenset(self.required_scopes))
        if leeway < 0:
            raise ValueError(f"leeway must be 0 or more seconds, got {leeway}")
        self.leeway = leeway
        if revocation_retention <= 0:
            raise ValueError(f"revocation_retention must be more than 0 seconds, got {revocation_retention}")
        self.revocation_retention = revocation_retention
        self._clock = clock
        self._monotonic_clock = monotonic_clock
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
            clock=monotonic_clock,
        )
        self._claims_registry = self._build_claims_registry()
        self.token_cache = VerifiedTokenCache(token_cache_size)
        self.revocations = RevocationList()
        self.introspector = (
            Introspector(introspection, session, monotonic_clock) if introspection is not None else None
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
        """Close the HTTP sessions that the verifier created."""
        await self.keys.close()
        if self.introspector is not None:
            await self.introspector.close()

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
            IntrospectionUnavailable: introspection is on, failed, and ``fail_open`` is off.
        """
        scopes_needed, scope_set = self._scopes_for(required_scopes)
        digest = token_digest(token)
        entry = self.token_cache.get(digest)
        if entry is not None:
            # SECURITY: the key that verified the signature must still be the
            # key of its kid, so a key dropped from the key set ends its tokens.
            # If it is not, the token is checked in full.
            if await self.keys.get_key(entry.kid) is not entry.key:
                self.token_cache.discard(digest)
                entry = None
        now = self._clock()
        if entry is None:
            entry = await self._verify_in_full(token)
            # A token without exp is not cached, so that no entry outlives its token.
            cache = entry.expires_at is not None
        else:
            self._check_cached_times(digest, entry, int(now))
            cache = False

        # SECURITY: revocations name the signing input and the jti, not these
        # bytes, so that a malleated copy of a revoked token (an ECDSA s
        # replaced by n - s) is refused too, cached or not.
        if self.revocations and self.revocations.is_revoked(entry, now):
            self.token_cache.discard(digest)
            raise InvalidToken("The access token was revoked")
        if self.introspector is not None:
            await self._check_introspection(digest, token, entry)
        if cache:
            self.token_cache.put(digest, entry)

        if not scope_set <= entry.granted:
            raise InsufficientScope("The access token lacks a required scope", scope=" ".join(scopes_needed))
        return entry.verified

    def revoke(
        self,
        *,
        token: str | None = None,
        token_id: str | None = None,
        family_id: str | None = None,
        subject: str | None = None,
        issued_before: float | None = None,
        until: float | None = None,
    ) -> None:
        """Reject tokens from now on, whether cached or not.

        Give one or more of ``token``, ``token_id``, ``family_id`` and
        ``subject``. The revocation applies to this verifier only, so other
        processes need their own call.

        Args:
            token: that token, including any copy of it that differs only in
                the encoding of its signature (an ECDSA signature ``(r, s)`` is
                also valid as ``(r, n - s)``). Its ``jti``, read without
                checking the signature, is revoked too. Pass only a token
                that this verifier accepted or that came from a trusted
                source: an unverified token can name any ``jti``, so a
                caller that revokes whatever a client sends would let anyone
                revoke another person's token.
            token_id: the token whose ``jti`` is this.
            family_id: every token whose ``fid`` (frontauth's refresh-token
                family) is this.
            subject: every token of this ``sub`` whose ``iat`` is at or
                before ``issued_before``.
            issued_before: for ``subject``, in seconds since the epoch.
                Defaults to the verifier clock's current time.
            until: clock time after which the revocation may be forgotten,
                because the tokens it covers have expired. Defaults to the
                token's ``exp`` plus the leeway for ``token``, at most now plus
                ``revocation_retention``, and to now plus the retention otherwise.

        Raises:
            ValueError: none of the four is given.
        """
        if token is None and token_id is None and family_id is None and subject is None:
            raise ValueError("revoke needs a token, token_id, family_id or subject")
        now = self._clock()
        forget_at = now + self.revocation_retention if until is None else until
        if token is not None:
            claims = unverified_claims(token)
            # Capped at the retention: exp comes from an unverified payload here.
            token_until = min(token_forget_time(claims, self.leeway), forget_at) if until is None else until
            self.revocations.add_digest(signing_input_digest(token), token_until)
            jti = claims.get("jti")
            if isinstance(jti, str) and jti:
                self.revocations.add_token_id(jti, token_until)
            # Cached copies with another signature are refused, then dropped, on their next use.
            self.token_cache.discard(token_digest(token))
        if token_id is not None:
            self.revocations.add_token_id(token_id, forget_at)
        if family_id is not None:
            self.revocations.add_family(family_id, forget_at)
        if subject is not None:
            self.revocations.add_subject(subject, now if issued_before is None else issued_before, forget_at)

    async def _check_introspection(self, digest: bytes, token: str, entry: CacheEntry) -> None:
        """Introspect the token unless an ``active`` response is less than ``interval`` seconds old."""
        assert self.introspector is not None
        checked = entry.introspected_at
        # The interval is measured on the monotonic clock: with the wall clock,
        # stepping it back an hour would trust an active response for an hour.
        started = self._monotonic_clock()
        if checked is not None and 0 <= started - checked < self.introspector.settings.interval:
            return
        active = await self.introspector.is_active(digest, token)
        if active is None:
            if self.introspector.settings.fail_open:
                return
            raise IntrospectionUnavailable("token introspection failed, and fail_open is off")
        if not active:
            # SECURITY: an authorization server does not reactivate a revoked
            # token, so the inactive response is kept until the token expires.
            # It names the signing input and the jti, so that a malleated copy of
            # the token is refused too, even while introspection fails open.
            forget_at = math.inf if entry.expires_at is None else entry.expires_at + self.leeway
            self.revocations.add_digest(entry.signed_digest, forget_at)
            if entry.token_id:
                self.revocations.add_token_id(entry.token_id, forget_at)
            self.token_cache.discard(digest)
            raise InvalidToken("The access token was revoked")
        entry.introspected_at = started

    async def _verify_in_full(self, token: str) -> CacheEntry:
        """Run the checks that a cached token skips: form, key, signature and claims."""
        signed = self._parse(token)
        kid = signed.headers()["kid"]
        key = await self.keys.get_key(kid)
        if key is None:
            raise InvalidToken("No trusted key matches the access token kid")
        self._check_signature(signed, key)
        claims = self._check_claims(signed.payload)

        granted = tuple(claims.get("scope", "").split())
        audience = claims["aud"]
        verified = VerifiedToken(
            subject=claims.get("sub", ""),
            # azp: the OpenID Connect name for the client, which some providers use instead.
            client_id=claims.get("client_id") or claims.get("azp") or "",
            scopes=granted,
            audience=(audience,) if isinstance(audience, str) else tuple(audience),
            issuer=claims.get("iss", ""),
            expires_at=int(claims["exp"]) if "exp" in claims else 0,
            issued_at=int(claims.get("iat", 0)),
            token_id=claims.get("jti", ""),
            claims=types.MappingProxyType(claims),
        )
        family_id = claims.get("fid")
        return CacheEntry(
            verified=verified,
            key=key,
            kid=kid,
            granted=frozenset(granted),
            expires_at=claims.get("exp"),
            not_before=claims.get("nbf"),
            issued_at=claims.get("iat"),
            token_id=claims.get("jti"),
            family_id=family_id if isinstance(family_id, str) else None,
            subject=claims.get("sub"),
            signed_digest=signing_input_digest(token),
        )

    def _check_cached_times(self, digest: bytes, entry: CacheEntry, now: int) -> None:
        """Check the times of a cached token with joserfc's rule and the same leeway as a first use."""
        assert entry.expires_at is not None
        if entry.expires_at <= now - self.leeway:
            self.token_cache.discard(digest)
            raise InvalidToken("The access token expired")
        # nbf and iat passed when the entry was made, so these fail only if the clock went back.
        if entry.not_before is not None and entry.not_before > now + self.leeway:
            raise InvalidToken(_CLAIM_DESCRIPTIONS["nbf"])
        if entry.issued_at is not None and entry.issued_at > now + self.leeway:
            raise InvalidToken(_CLAIM_DESCRIPTIONS["iat"])

    def _scopes_for(self, required_scopes: typing.Iterable[str] | None) -> tuple[tuple[str, ...], frozenset[str]]:
        """Return the scopes a call needs, in order and as a set, validating a list only once."""
        if required_scopes is None:
            return self._default_scopes
        if isinstance(required_scopes, tuple):
            known = self._scope_sets.get(required_scopes)
            if known is not None:
                return known
        checked = _check_scopes(required_scopes)
        result = (checked, frozenset(checked))
        if len(self._scope_sets) < _SCOPE_MEMO_SIZE:
            self._scope_sets[checked] = result
        return result

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

    def _build_claims_registry(self) -> JWTClaimsRegistry:
        options: dict[str, typing.Any] = {name: {"essential": True} for name in self.required_claims}
        options["aud"] = {"essential": True, "value": self.audience}
        if self.verify_issuer:
            options["iss"] = {"essential": True, "values": list(self.issuers)}
        # joserfc compares claim times with whole seconds of "now".
        return JWTClaimsRegistry(now=lambda: int(self._clock()), leeway=self.leeway, **options)

    def _check_claims(self, payload: bytes) -> dict[str, typing.Any]:
        try:
            claims = json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise InvalidToken("The access token is malformed") from None
        if not isinstance(claims, dict):
            raise InvalidToken("The access token is malformed")

        try:
            self._claims_registry.validate(claims)
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

