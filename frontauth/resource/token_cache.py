"""The verified-token cache of a :class:`~frontauth.resource.BearerVerifier`.

A token whose signature, issuer, audience and times passed once is remembered
under the SHA-256 digest of its bytes. A later request with the same token then
skips the JSON parsing and the signature check, which dominate the cost of a
verification. A digest is 32 bytes where a token is several hundred, and a copy
of the cache contains no working credential.

Lifecycle of an entry: it is added after a full verification succeeds, and it
is dropped when the cache is full and the entry is the least recently used one,
when its key is no longer the key of its ``kid`` in the current key set, or
when its token is revoked by :meth:`BearerVerifier.revoke`. Failed
verifications are never stored, so invalid tokens cannot fill the cache, and a
token that failed once is checked in full again next time.

Invariant: an entry carries what every use must check again (``exp``, ``nbf``,
``iat``, the key, the scopes and the revocation keys), and the verifier checks
them on each hit. The cache itself only stores and evicts.

SECURITY: the key is the digest of the whole token, signature included, and not
of the signing input (``header.payload``). An ECDSA signature ``(r, s)`` also
verifies as ``(r, n - s)``, so one credential can have several valid byte
strings; each is a separate entry and its first use is checked in full, which
costs one signature check. Keyed by the signing input instead, a copy of a
cached token with any signature at all, even a stripped or garbage one, would be
a hit and be accepted. Revocation, which must cover every copy, is therefore
recorded by :func:`signing_input_digest` and by ``jti`` (see revocation.py).
"""

from __future__ import annotations

import collections
import hashlib
import typing

import attrs

if typing.TYPE_CHECKING:
    from joserfc.jwk import Key

    from frontauth.resource.verifier import VerifiedToken


def token_digest(token: str) -> bytes:
    """Return the SHA-256 digest of a token, signature included, the key of its cache entry."""
    # surrogatepass: a str from a caller may hold lone surrogates, which a
    # plain UTF-8 encode rejects. Such a token fails to parse later anyway.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def signing_input_digest(token: str) -> bytes:
    """Return the SHA-256 digest of a token's signing input, ``header.payload``, the key of its revocation.

    Every byte string that verifies as this credential has the same signing
    input, whatever the encoding of its signature (an ECDSA ``s`` or ``n - s``).
    """
    return hashlib.sha256(token.rpartition(".")[0].encode("utf-8", "surrogatepass")).digest()


@attrs.define(slots=True, eq=False)
class CacheEntry:
    """A verified token and what each later use must check again.

    ``expires_at``, ``not_before`` and ``issued_at`` are the raw claim values,
    compared by the verifier with the same rule and leeway as a full check.
    """

    verified: VerifiedToken
    key: Key
    kid: str
    granted: frozenset[str]
    expires_at: float | None
    not_before: float | None
    issued_at: float | None
    token_id: str | None
    family_id: str | None
    subject: str | None
    signed_digest: bytes
    """:func:`signing_input_digest` of the token, which revocations of that exact credential name."""
    introspected_at: float | None = None
    """Monotonic clock time of the last introspection that found the token active."""


class VerifiedTokenCache:
    """A least-recently-used map from token digest to :class:`CacheEntry`, bounded in entries.

    Args:
        max_entries: maximum number of entries. 0 turns the cache off.

    Raises:
        ValueError: ``max_entries`` is negative.
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries < 0:
            raise ValueError(f"token cache size must be 0 or more entries, got {max_entries}")
        self.max_entries = max_entries
        self._entries: collections.OrderedDict[bytes, CacheEntry] = collections.OrderedDict()
        self.hits = 0
        """Number of lookups that found an entry."""
        self.misses = 0
        """Number of lookups that found none."""

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: bytes) -> CacheEntry | None:
        """Return the entry of a token digest and mark it most recently used, or None."""
        entry = self._entries.get(digest)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(digest)
        return entry

    def peek(self, digest: bytes) -> CacheEntry | None:
        """Return the entry of a token digest, or None, without counting a lookup or reordering."""
        return self._entries.get(digest)

    def put(self, digest: bytes, entry: CacheEntry) -> None:
        """Store an entry, evicting the least recently used ones beyond ``max_entries``."""
        if self.max_entries == 0:
            return
        self._entries[digest] = entry
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def discard(self, digest: bytes) -> None:
        """Remove the entry of a token digest if there is one."""
        self._entries.pop(digest, None)

    def clear(self) -> None:
        """Remove every entry."""
        self._entries.clear()
