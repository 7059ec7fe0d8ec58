"""Revocations recorded in one :class:`~frontauth.resource.BearerVerifier`.

A JWT access token is checked without asking the authorization server, so a
resource server that verifies it locally accepts it until ``exp`` unless it
learns of a revocation. This module keeps those revocations, in four kinds of record:

- a signing-input digest: that exact token, whatever the encoding of its
  signature (see below);
- a ``jti``: the token with that identifier (RFC 7519 §4.1.7);
- a family: every token whose ``fid`` claim names a refresh-token family that
  frontauth revoked, for example on refresh-token reuse;
- a subject: every token of that ``sub`` issued at or before a given time.

Each record is kept until a clock time after which every token it refuses has
expired anyway, then dropped, so the lists do not grow without bound. The
verifier checks them on every verification, whether the token came from the
verified-token cache or was checked in full.

SECURITY: a revocation of one token (:meth:`BearerVerifier.revoke` with
``token``, or an inactive introspection response) blocks the credential, not
one byte string. An ECDSA signature ``(r, s)`` is also valid as ``(r, n - s)``,
and cryptography accepts both, so whoever holds an ES256 token can make a
byte-different copy that verifies. The record therefore names the digest of the
signing input ``header.payload``, which that change leaves alone, and the
token's ``jti``.
"""

from __future__ import annotations

import base64
import json
import math
import typing

from frontauth.resource.token_cache import CacheEntry

# Minimum seconds between two scans for records to drop. A record outliving its
# forget time only refuses tokens that have expired, so a late scan is harmless.
PURGE_INTERVAL = 60.0


class RevocationList:
    """Revoked signing-input digests, ``jti`` values, families and subjects, each with the time it may be forgotten."""

    def __init__(self) -> None:
        self._digests: dict[bytes, float] = {}
        self._token_ids: dict[str, float] = {}
        self._families: dict[str, float] = {}
        # subject -> (tokens issued at or before this time are revoked, forget time)
        self._subjects: dict[str, tuple[float, float]] = {}
        self._next_purge = math.inf

    def __bool__(self) -> bool:
        # Checked on every verification, so cheaper than __len__.
        return bool(self._digests or self._token_ids or self._families or self._subjects)

    def __len__(self) -> int:
        return len(self._digests) + len(self._token_ids) + len(self._families) + len(self._subjects)

    def add_digest(self, digest: bytes, until: float) -> None:
        """Revoke one token, by the :func:`~frontauth.resource.token_cache.signing_input_digest`, until ``until``."""
        self._digests[digest] = max(until, self._digests.get(digest, until))
        self._next_purge = min(self._next_purge, until)

    def add_token_id(self, token_id: str, until: float) -> None:
        """Revoke the token with this ``jti`` until clock time ``until``."""
        self._token_ids[token_id] = max(until, self._token_ids.get(token_id, until))
        self._next_purge = min(self._next_purge, until)

    def add_family(self, family_id: str, until: float) -> None:
        """Revoke every token whose ``fid`` is this family until clock time ``until``."""
        self._families[family_id] = max(until, self._families.get(family_id, until))
        self._next_purge = min(self._next_purge, until)

    def add_subject(self, subject: str, issued_before: float, until: float) -> None:
        """Revoke the tokens of ``subject`` whose ``iat`` is at or before ``issued_before``, until ``until``."""
        earlier = self._subjects.get(subject)
        if earlier is not None:
            issued_before = max(issued_before, earlier[0])
            until = max(until, earlier[1])
        self._subjects[subject] = (issued_before, until)
        self._next_purge = min(self._next_purge, until)

    def is_revoked(self, entry: CacheEntry, now: float) -> bool:
        """Return whether a record revokes this token at clock time ``now``."""
        if now >= self._next_purge:
            self.purge(now)
        if entry.signed_digest in self._digests:
            return True
        if entry.token_id is not None and entry.token_id in self._token_ids:
            return True
        if entry.family_id is not None and entry.family_id in self._families:
            return True
        if entry.subject is not None and entry.subject in self._subjects:
            issued_before = self._subjects[entry.subject][0]
            # A token without iat cannot show that it came after the revocation.
            return entry.issued_at is None or entry.issued_at <= issued_before
        return False

    def purge(self, now: float) -> None:
        """Drop the records whose forget time has come."""
        for records in (self._digests, self._token_ids, self._families):
            for name in [name for name, until in records.items() if until <= now]:
                del records[name]
        for subject in [subject for subject, (_, until) in self._subjects.items() if until <= now]:
            del self._subjects[subject]
        remaining = [
            *self._digests.values(),
            *self._token_ids.values(),
            *self._families.values(),
            *(until for _, until in self._subjects.values()),
        ]
        self._next_purge = max(min(remaining, default=math.inf), now + PURGE_INTERVAL)


def unverified_claims(token: str) -> dict[str, typing.Any]:
    """Return the claims of a token without checking its signature, or an empty dict if it has none.

    Only for revocation. There the ``jti`` can only make a revocation reject
    more tokens, and the ``exp`` only decides when a record may be forgotten,
    which the verifier caps at its ``revocation_retention``.
    """
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, TypeError, UnicodeDecodeError, RecursionError):
        # RecursionError: deeply nested JSON.
        return {}
    return claims if isinstance(claims, dict) else {}


def token_forget_time(claims: typing.Mapping[str, typing.Any], leeway: int) -> float:
    """Return when a revoked token has surely expired: its ``exp`` plus the leeway, or never."""
    expires_at = claims.get("exp")
    if isinstance(expires_at, bool) or not isinstance(expires_at, (int, float)) or math.isnan(expires_at):
        return math.inf
    return expires_at + leeway
