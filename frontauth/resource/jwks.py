"""The cached key set (JWKS) of one authorization server or identity provider.

Lifecycle: the first verification discovers ``jwks_uri`` from the issuer's
RFC 8414 metadata (unless it is given) and fetches the key set. The key set is
then reused until ``ttl`` seconds pass; after that, the next verification
fetches it again. While fetches fail, retries run in the background and the
last good key set keeps verifying. A token whose ``kid`` is not in the set triggers a refetch, but at most one per
``refetch_cooldown`` seconds, so a flood of tokens with made-up key ids cannot
turn into a flood of requests to the authorization server.

Invariants:

- At most one fetch runs at a time. Callers that need keys while it runs wait
  for that fetch instead of starting their own.
- A failed fetch never discards the last good key set. The next attempt waits
  for an exponential backoff with jitter (``first_backoff`` seconds, doubling on
  each failure up to ``max_backoff``, at least a 429 or 503 response's
  ``Retry-After``), and is made by the first verification after that time.
- Time comes from ``clock``, so tests move it forward instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import typing
import urllib.parse

import aiohttp
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet

from frontauth.resource.errors import KeySetUnavailable

logger = logging.getLogger("frontauth.resource")

# Largest metadata document or key set accepted, in bytes.
MAX_DOCUMENT_SIZE = 256 * 1024

# First retry delay after a failed fetch, in seconds. It doubles on each failure.
_FIRST_BACKOFF = 1.0

Clock = typing.Callable[[], float]
Jitter = typing.Callable[[float], float]


def half_jitter(backoff: float) -> float:
    """Return a delay drawn uniformly between half the backoff and the whole of it."""
    return random.uniform(backoff / 2, backoff)


class FetchError(Exception):
    """The metadata document or the key set could not be fetched or parsed.

    Attributes:
        retry_after: seconds the server asked to wait (``Retry-After`` of a 429
            or 503 response), or None.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def loggable_url(url: str) -> str:
    """Return the URL without its query, fragment and user information, which may carry credentials."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


async def read_capped(response: aiohttp.ClientResponse, limit: int = MAX_DOCUMENT_SIZE) -> bytes | None:
    """Read a response body to its end; None once it passes ``limit`` bytes."""
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def parse_json(body: bytes) -> typing.Any:
    """Decode a JSON response body.

    Raises:
        ValueError: the body is not JSON, or it is nested deeper than the
            interpreter's recursion limit, which counts as a bad response too.
    """
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _retry_after(value: str | None) -> float | None:
    """Parse a Retry-After header given in seconds; the HTTP-date form is ignored."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


async def fetch_json(
    session: aiohttp.ClientSession, url: str, timeout: aiohttp.ClientTimeout
) -> dict[str, typing.Any]:
    """GET a JSON object of at most MAX_DOCUMENT_SIZE bytes, without following redirects.

    Raises:
        FetchError: the request failed or timed out, the status is not 200, or
            the body is too large or not a JSON object (deeply nested JSON included).
    """
    shown = loggable_url(url)
    try:
        async with session.get(
            url, timeout=timeout, allow_redirects=False, headers={"Accept": "application/json"}
        ) as response:
            if response.status != 200:
                retry_after = _retry_after(response.headers.get("Retry-After")) if response.status in (429, 503) else None
                raise FetchError(f"GET {shown} returned HTTP {response.status}", retry_after)
            body = await read_capped(response)
            if body is None:
                raise FetchError(f"GET {shown} returned more than {MAX_DOCUMENT_SIZE} bytes")
    except asyncio.TimeoutError:
        raise FetchError(f"GET {shown} timed out") from None
    except aiohttp.ClientError as exc:
        raise FetchError(f"GET {shown} failed: {type(exc).__name__}") from None
    try:
        document = parse_json(body)
    except ValueError:
        raise FetchError(f"GET {shown} returned invalid JSON") from None
    if not isinstance(document, dict):
        raise FetchError(f"GET {shown} returned JSON that is not an object")
    return document


def metadata_url(issuer: str) -> str:
    """Return the RFC 8414 metadata URL of an issuer.

    RFC 8414 §3.1: the well-known segment goes between the host and the path of
    the issuer, so ``https://as.example/tenant`` has its metadata at
    ``https://as.example/.well-known/oauth-authorization-server/tenant``.
    """
    parts = urllib.parse.urlsplit(issuer)
    path = "/.well-known/oauth-authorization-server" + parts.path.rstrip("/")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class KeySetCache:
    """Signature keys of one issuer, fetched over HTTP and cached.

    NOTE: a cache belongs to the event loop that first fetches with it, because
    its aiohttp session and its fetch task are bound to that loop.

    Args:
        issuer: the issuer identifier. Its metadata must name exactly this issuer.
        jwks: a fixed key set (``{"keys": [...]}``). When given, nothing is fetched.
        jwks_uri: the key set URL. When given, metadata discovery is skipped.
        ttl: seconds a fetched key set is used before it is fetched again.
        refetch_cooldown: minimum seconds between two fetches. An unknown
            ``kid`` triggers a refetch only when this much time has passed.
        max_backoff: maximum delay between attempts after failed fetches, in seconds.
        timeout: seconds allowed for each HTTP request.
        session: aiohttp client session to use. When None, one is created on
            the first fetch and closed by :meth:`close`.
        first_backoff: delay after the first failed fetch, in seconds.
        clock: monotonic time in seconds; tests pass a clock they move.
        jitter: maps a backoff to the delay actually waited.
        on_fetch_error: called once per failed fetch, for metrics.
        on_retry: called once per fetch that follows a failed one, for metrics.
    """

    def __init__(
        self,
        issuer: str,
        *,
        jwks: typing.Mapping[str, typing.Any] | None = None,
        jwks_uri: str | None = None,
        ttl: float = 300.0,
        refetch_cooldown: float = 30.0,
        max_backoff: float = 60.0,
        timeout: float = 5.0,
        session: aiohttp.ClientSession | None = None,
        first_backoff: float = _FIRST_BACKOFF,
        clock: Clock = time.monotonic,
        jitter: Jitter = half_jitter,
        on_fetch_error: typing.Callable[[], None] | None = None,
        on_retry: typing.Callable[[], None] | None = None,
    ) -> None:
        self.issuer = issuer
        self._configured_jwks_uri = jwks_uri
        self._jwks_uri = jwks_uri
        self._ttl = ttl
        self._refetch_cooldown = refetch_cooldown
        self._max_backoff = max_backoff
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owns_session = session is None
        self._first_backoff = first_backoff
        self._clock = clock
        self._jitter = jitter
        self.on_fetch_error = on_fetch_error
        self.on_retry = on_retry

        self._keys: KeySet | None = None
        self._by_kid: dict[str, Key] = {}
        self._static = jwks is not None
        if jwks is not None:
            try:
                self._use(_import_key_set(jwks))
            except FetchError as exc:
                raise ValueError(f"jwks: {exc}") from exc
        self._stale_at = 0.0
        self._next_fetch_at = 0.0
        self._failures = 0
        self._fetch_task: asyncio.Task[None] | None = None

        self.fetch_count = 0
        """Number of key set fetches attempted, successful or not."""
        self.fetch_errors = 0
        """Number of failed fetches (metadata or key set)."""
        self.retries = 0
        """Number of fetches made after a failed one."""

    @property
    def next_fetch_at(self) -> float:
        """Clock time before which no fetch starts (cool-down or backoff)."""
        return self._next_fetch_at

    @property
    def loaded(self) -> bool:
        """Whether a key set is loaded (fixed, or fetched at least once)."""
        return self._keys is not None

    async def get_key(self, kid: str) -> Key | None:
        """Return the key with this ``kid``, refreshing the key set if needed.

        Returns:
            The key, or None when no key of the current key set has this ``kid``
            and a refetch is not allowed yet or did not bring one.

        Raises:
            KeySetUnavailable: no key set has ever been loaded.
        """
        if not self._static:
            if self._keys is None:
                await self._refresh()
            elif self._clock() >= self._stale_at and self._failures:
                # A retry during an outage: it runs in the background while the
                # last good key set keeps verifying, so no request waits on it.
                self._start_fetch()
            elif self._clock() >= self._stale_at:
                await self._refresh()
        key = self._find(kid)
        if key is None and not self._static:
            # Possibly a key rotation at the authorization server.
            await self._refresh()
            key = self._find(kid)
        if self._keys is None:
            raise KeySetUnavailable(f"no key set of issuer {self.issuer} could be loaded")
        return key

    async def load(self) -> bool:
        """Fetch the key set now unless one is loaded; return whether one is loaded afterwards."""
        if self._keys is None:
            await self._refresh()
        return self._keys is not None

    async def close(self) -> None:
        """Cancel a running fetch and close the HTTP session if this cache created it."""
        if self._fetch_task is not None:
            self._fetch_task.cancel()
            try:
                await self._fetch_task
            except asyncio.CancelledError:
                pass
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _find(self, kid: str) -> Key | None:
        return self._by_kid.get(kid)

    def _use(self, keys: KeySet) -> None:
        """Replace the key set, keeping the old object of every key whose public JWK is unchanged.

        NOTE: the verified-token cache compares key objects by identity, so a
        refetch that brings the same keys must not look like a key change.
        """
        previous = self._by_kid
        by_kid: dict[str, Key] = {}
        for index, key in enumerate(keys.keys):
            old = previous.get(key.kid)  # type: ignore[arg-type]
            if old is not None and old.as_dict(private=False) == key.as_dict(private=False):
                keys.keys[index] = key = old
            # The first key with a kid wins, as a linear search would find it.
            by_kid.setdefault(key.kid, key)  # type: ignore[arg-type]
        self._keys = keys
        self._by_kid = by_kid

    def _start_fetch(self) -> asyncio.Task[None] | None:
        """Return the running fetch, or start one if the cool-down or backoff allows it."""
        if self._fetch_task is None and self._clock() >= self._next_fetch_at:
            self._fetch_task = asyncio.create_task(self._fetch())
        return self._fetch_task

    async def _refresh(self) -> None:
        """Wait for the running fetch, or for a new one if the cool-down or backoff allows it."""
        task = self._start_fetch()
        if task is not None:
            # NOTE: shield, so that a caller whose request is cancelled does not
            # cancel the fetch that other callers are waiting for.
            await asyncio.shield(task)

    def backoff(self, failures: int) -> float:
        """Return the backoff before the next attempt after ``failures`` failures in a row, before jitter."""
        return min(self._first_backoff * 2 ** (failures - 1), self._max_backoff)

    async def _fetch(self) -> None:
        self.fetch_count += 1
        if self._failures and self.on_retry is not None:
            self.on_retry()
        self.retries += bool(self._failures)
        started = self._clock()
        try:
            if self._jwks_uri is None:
                self._jwks_uri = await self._discover_jwks_uri()
            document = await self._get_json(self._jwks_uri)
            keys = _import_key_set(document)
        except FetchError as exc:
            self.fetch_errors += 1
            self._failures += 1
            if self.on_fetch_error is not None:
                self.on_fetch_error()
            delay = self._jitter(self.backoff(self._failures))
            if exc.retry_after is not None:
                delay = max(delay, min(exc.retry_after, self._max_backoff))
            self._next_fetch_at = started + delay
            # Discover again next time, in case the metadata moved the key set.
            self._jwks_uri = self._configured_jwks_uri
            logger.warning(
                "fetching the key set of issuer %s failed (attempt %d, %s); retrying in %.1f s; %s",
                self.issuer,
                self._failures,
                exc,
                delay,
                "keeping the previous key set" if self._keys is not None else "no key set is loaded",
            )
        else:
            self._use(keys)
            self._failures = 0
            self._stale_at = started + self._ttl
            self._next_fetch_at = started + self._refetch_cooldown
            logger.debug("loaded %d keys of issuer %s", len(keys.keys), self.issuer)
        finally:
            self._fetch_task = None

    async def _discover_jwks_uri(self) -> str:
        document = await self._get_json(metadata_url(self.issuer))
        # SECURITY: RFC 8414 §3.3: the metadata must name the issuer it was
        # requested for, or another server's keys could be trusted (mix-up).
        if document.get("issuer") != self.issuer:
            raise FetchError(f"metadata issuer is not {self.issuer}")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or urllib.parse.urlsplit(jwks_uri).scheme not in ("https", "http"):
            raise FetchError("metadata has no valid jwks_uri")
        return jwks_uri

    async def _get_json(self, url: str) -> dict[str, typing.Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return await fetch_json(self._session, url, self._timeout)


def _import_key_set(document: typing.Mapping[str, typing.Any]) -> KeySet:
    """Import the signature keys of a JWKS document, skipping keys meant for encryption."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise FetchError("the key set has no keys array")
    signing = [entry for entry in entries if isinstance(entry, dict) and entry.get("use", "sig") == "sig"]
    try:
        return KeySet.import_key_set({"keys": signing})
    except (JoseError, ValueError, TypeError) as exc:
        raise FetchError(f"the key set is invalid: {exc}") from exc
