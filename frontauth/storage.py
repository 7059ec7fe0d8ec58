"""The storage contract: one async driver interface under typed stores.

Flow code (endpoints and grants) talks only to the typed stores at the bottom of
this module. Each store builds its keys, serializes its records and picks its TTL,
then calls one :class:`Driver`. A driver has no OAuth logic: it stores
bytes under string keys. Every driver operation but ``hit_and_get`` touches
exactly one key, so the same stores run unchanged on a Redis Cluster.
``hit_and_get`` counts a request in one key and reads others. Its count is
atomic on its own and the reads need no atomicity, so a cluster may serve the
keys from different nodes.

Record lifecycles and their invariants:

- pending authorization: written once by ``/oauth/authorize``; taken (read and
  deleted in one step) when the person approves or denies, so a consent form
  cannot be replayed.
- authorization code: written once; redeemed with :meth:`Driver.swap`, which
  replaces the record with a "consumed" marker that keeps the original TTL. The
  caller that receives the unconsumed record is the only one that may issue
  tokens; any later caller sees the marker and revokes what the first issued
  (RFC 6749 §4.1.2).
- refresh token: the same swap turns the record into a "rotated" marker, so a
  second presentation of the same token is detected as reuse (RFC 9700 §4.14).
- refresh family: one record per chain of refresh tokens. Revoking the family
  invalidates every token of the chain, and the access tokens minted from it
  when they are introspected.
"""

from __future__ import annotations

import typing

import attrs


@attrs.frozen
class WindowState:
    """The state of one sliding-window rate-limit key after a hit or a check.

    Attributes:
        allowed: whether the request fits in the window.
        count: requests counted in the window, including this one when it was
            allowed and consumed.
        limit: the maximum number of requests per window.
        retry_after: seconds until one more request fits; 0 when ``allowed``.
    """

    allowed: bool
    count: int
    limit: int
    retry_after: float


class StorageUnavailable(Exception):
    """The driver could not reach its backend (connection refused, timed out).

    Endpoints turn it into 503 ``temporarily_unavailable`` with ``Retry-After``.
    """

    def __init__(self, driver: str, operation: str, reason: str) -> None:
        super().__init__(f"{driver} storage {operation} failed: {reason}")
        self.driver = driver
        self.operation = operation
        self.reason = reason


class Driver(typing.Protocol):
    """Single-key async storage operations shared by every driver.

    Keys are str and already carry the configured prefix. Values are bytes.
    ``ttl`` is in seconds (float allowed); ``None`` means no expiry. An expired
    key behaves exactly like a missing one for every operation. Backend
    failures raise :class:`StorageUnavailable`, never a backend-specific error.

    A driver may set ``saves_round_trips = False`` when it works in process:
    callers then skip the reads ahead and concurrent writes that only pay off
    when each operation crosses the network. Drivers without the attribute
    are treated as remote.
    """

    name: str

    async def get(self, key: str) -> bytes | None:
        """Return the value, or None when the key is missing or expired."""

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store the value, replacing any previous value and TTL."""

    async def set_if_absent(self, key: str, value: bytes, ttl: float | None) -> bool:
        """Store the value only when the key is missing; return True if stored."""

    async def take(self, key: str) -> bytes | None:
        """Atomically return and delete the value; None when missing.

        Of several concurrent callers on one key, exactly one gets the value.
        """

    async def swap(self, key: str, value: bytes) -> bytes | None:
        """Atomically replace an existing value and return the old one.

        The key keeps its remaining TTL. A missing key stays missing and the
        call returns None. Of several concurrent callers, exactly one receives
        the value that was there before any of them.
        """

    async def delete(self, key: str) -> bool:
        """Delete the key; return True if it existed."""

    async def ttl(self, key: str) -> float | None:
        """Return the remaining TTL in seconds, None when missing or without expiry."""

    async def hit(
        self, key: str, window: float, limit: int, now: float, consume: bool = True
    ) -> WindowState:
        """Count one request in a sliding window of ``window`` seconds ending at ``now``.

        With ``consume`` False the state is computed without recording a
        request. A request that is not allowed is not recorded either, so a
        client that keeps knocking does not extend its own lockout.
        """

    async def hit_and_get(
        self, window_key: str, window: float, limit: int, now: float, keys: typing.Sequence[str]
    ) -> tuple[WindowState, list[bytes | None]]:
        """Count one request as ``hit`` does, and read ``keys`` in the same round trip where the backend allows.

        Returns the window state and the values under ``keys``, in order. A
        value is None when its key is missing, and every value is None when
        the request is not allowed. The reads are not atomic with the count:
        they see the keys as they are at about the same time, as a ``get``
        right after ``hit`` would.
        """

    async def ping(self) -> None:
        """Raise StorageUnavailable when the backend does not respond."""

    async def close(self) -> None:
        """Release connections and background tasks."""
