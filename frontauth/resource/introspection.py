"""Revocation learned from the authorization server by token introspection (RFC 7662).

The verifier still checks every token locally. Introspection only adds what a
JWT cannot show: whether the authorization server has revoked the token since
it was issued. A token is introspected after it passes the local checks, so an
invalid token never causes a request to the authorization server.

The verifier keeps an ``active`` response for ``interval`` seconds and an
inactive one until the token expires. A request fails on a network error, a
timeout, a status other than 200, or a body that is not JSON (deeply nested
JSON included) or has no boolean ``active``. A failure starts a backoff of
1 s, doubling up to ``interval``. During the backoff no request is sent and
every check counts as failed.

The interval and the backoff are measured on a monotonic clock, so a step of
the wall clock (an NTP correction) neither prolongs the backoff nor the trust
in an ``active`` response.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import typing
import urllib.parse

import aiohttp
import attrs

from frontauth.resource.jwks import MAX_DOCUMENT_SIZE, Clock, loggable_url, parse_json, read_capped

logger = logging.getLogger("frontauth.resource")

AUTH_METHODS = ("client_secret_basic", "client_secret_post")


def _check_endpoint(instance: typing.Any, attribute: attrs.Attribute[str], value: str) -> None:
    if urllib.parse.urlsplit(value).scheme not in ("https", "http"):
        raise ValueError(f"introspection endpoint must be an http or https URL, got {loggable_url(value)!r}")


def _check_positive(instance: typing.Any, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"introspection {attribute.name} must be more than 0 seconds, got {value}")


@attrs.frozen
class Introspection:
    """Settings for introspecting tokens at the authorization server.

    frontauth returns ``active`` for tokens of other clients only to a
    confidential client listed in its configuration, so ``client_id`` must name
    such a client. A client that registered itself would see every other
    client's token as inactive.

    Args:
        endpoint: the introspection endpoint, for frontauth ``{issuer}/oauth/introspect``.
        client_id: the resource server's client at the authorization server.
        client_secret: that client's secret.
        interval: seconds an ``active`` answer is trusted. A token revoked at
            the authorization server is refused at the latest this long after
            the revocation (plus the time of one request).
        auth_method: ``client_secret_basic`` (RFC 6749 §2.3.1, HTTP Basic) or
            ``client_secret_post``; it must be the method the client registered.
        fail_open: when a request fails, accept a token that passed the local
            checks instead of rejecting it with 503. Off by default, so a token
            revoked while the authorization server is unreachable is not accepted.
        timeout: seconds allowed for each introspection request.
    """

    endpoint: str = attrs.field(validator=_check_endpoint)
    client_id: str
    client_secret: str = attrs.field(repr=False)
    interval: float = attrs.field(default=30.0, validator=_check_positive)
    auth_method: str = attrs.field(default="client_secret_basic", validator=attrs.validators.in_(AUTH_METHODS))
    fail_open: bool = False
    timeout: float = attrs.field(default=5.0, validator=_check_positive)


class IntrospectionFailed(Exception):
    """An introspection request failed. The message contains no token, so it is safe to log."""


class Introspector:
    """Sends introspection requests, one at a time per token, with a backoff after failures.

    Args:
        settings: the endpoint, credentials and timing.
        session: aiohttp client session to use. When None, one is created on
            the first request and closed by :meth:`close`.
        clock: monotonic time in seconds, the verifier's ``monotonic_clock``.
    """

    def __init__(self, settings: Introspection, session: aiohttp.ClientSession | None, clock: Clock) -> None:
        self.settings = settings
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout)
        self._running: dict[bytes, asyncio.Task[bool | None]] = {}
        self._failures = 0
        self._retry_at = 0.0
        self.requests = 0
        """Number of introspection requests sent."""
        self.failures = 0
        """Number of introspection requests that failed."""

    async def is_active(self, digest: bytes, token: str) -> bool | None:
        """Introspect a token, or join the running request for it.

        Concurrent calls for the same token share one request.

        Returns:
            The ``active`` member of the response, or None when the request failed
            or the backoff after a failure has not passed yet.
        """
        task = self._running.get(digest)
        if task is None:
            if self._clock() < self._retry_at:
                return None
            task = asyncio.create_task(self._introspect(token))
            self._running[digest] = task
            task.add_done_callback(lambda _: self._running.pop(digest, None))
        # NOTE: shield, so that a caller whose request is cancelled does not
        # cancel the request that other callers of the same token wait for.
        return await asyncio.shield(task)

    async def close(self) -> None:
        """Cancel running requests and close the HTTP session if this introspector created it."""
        running = list(self._running.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def _introspect(self, token: str) -> bool | None:
        self.requests += 1
        try:
            active = await self._post(token)
        except IntrospectionFailed as exc:
            self.failures += 1
            self._failures += 1
            delay = min(2.0 ** (self._failures - 1), max(self.settings.interval, 1.0))
            self._retry_at = self._clock() + delay
            # Log the first failure of a series at WARNING and the rest at DEBUG.
            level = logging.WARNING if self._failures == 1 else logging.DEBUG
            logger.log(level, "token introspection failed (%s); next attempt in %.0f s", exc, delay)
            return None
        if self._failures:
            logger.info("token introspection works again after %d failed attempts", self._failures)
        self._failures = 0
        return active

    async def _post(self, token: str) -> bool:
        settings = self.settings
        # RFC 7662 §2.1: the token, and a hint of its type.
        form = {"token": token, "token_type_hint": "access_token"}
        headers = {"Accept": "application/json"}
        if settings.auth_method == "client_secret_basic":
            headers["Authorization"] = _basic_credentials(settings.client_id, settings.client_secret)
        else:
            form.update(client_id=settings.client_id, client_secret=settings.client_secret)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        shown = loggable_url(settings.endpoint)
        try:
            async with self._session.post(
                settings.endpoint, data=form, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as response:
                if response.status != 200:
                    raise IntrospectionFailed(f"POST {shown} returned HTTP {response.status}")
                body = await read_capped(response)
                if body is None:
                    raise IntrospectionFailed(f"POST {shown} returned more than {MAX_DOCUMENT_SIZE} bytes")
        except asyncio.TimeoutError:
            raise IntrospectionFailed(f"POST {shown} timed out") from None
        except aiohttp.ClientError as exc:
            raise IntrospectionFailed(f"POST {shown} failed: {type(exc).__name__}") from None

        try:
            document = parse_json(body)
        except ValueError:
            raise IntrospectionFailed(f"POST {shown} returned invalid JSON") from None
        # RFC 7662 §2.2: "active" is the one required member, a boolean.
        active = document.get("active") if isinstance(document, dict) else None
        if not isinstance(active, bool):
            raise IntrospectionFailed(f"POST {shown} returned no boolean active member")
        return active


def _basic_credentials(client_id: str, client_secret: str) -> str:
    """Build an HTTP Basic header value; RFC 6749 §2.3.1 form-urlencodes the id and the secret first."""
    pair = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
