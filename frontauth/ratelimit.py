"""Rate limiting: a sliding window per key, kept in the storage driver.

Each rule has a window (seconds) and a maximum number of requests in it. A key
names who is counted, by default the endpoint and the client address. The
counts live in the storage driver (``Driver.hit``), so every instance that
shares a Redis also shares the budget. A rejected request is not recorded, so a
client that keeps knocking does not extend its own lockout.

The request middleware applies one rule per endpoint: ``POST /oauth/token``,
``POST /oauth/register``, ``GET /oauth/authorize`` and ``POST /oauth/login``.
Over the limit it returns 429 with ``Retry-After`` (RFC 6585 §4): JSON on the
API endpoints, the error page on the browser endpoints.

The authorization and token endpoints start by reading a few records that
the request names: the client, the browser session, the code or the refresh
token. The middleware counts the request and reads those records in one
storage round trip (``Driver.hit_and_get``). The handler's first read of each
record during that request then returns the value read there
(``stores.RequestReadAhead``). The request is still counted, and rejected
when over the limit, before its handler runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import typing
import urllib.parse

import attrs
from aiohttp import web

from frontauth import errors
from frontauth.appkeys import SERVICES
from frontauth.clients import basic_client_id
from frontauth.config import RateLimitSettings, Settings
from frontauth.metrics import METRICS
from frontauth.responses import render_error
from frontauth.services import Services
from frontauth.storage import Driver, WindowState

logger = logging.getLogger("frontauth.oauth")

Clock = typing.Callable[[], float]

DEFAULT_WINDOW = 60.0
DEFAULT_MAX_REQUESTS = 100

# (method, path) -> endpoint name, the rule that limits it.
ENDPOINT_ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/oauth/token"): "token",
    ("POST", "/oauth/register"): "register",
    ("GET", "/oauth/authorize"): "authorize",
    ("POST", "/oauth/login"): "login",
}

# At most one INFO line per rule in this interval; the other rejections log at DEBUG.
LOG_INTERVAL = 60.0

# Largest token request body the middleware reads to find what to read ahead
# before the handler runs. Token requests are a few hundred bytes. A larger or
# chunked body is left to the handler, which then reads its records itself.
READ_AHEAD_MAX_BODY = 4096
# Maximum length of a session cookie value that frontauth.browser.load_session looks up.
MAX_SESSION_COOKIE = 100
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


class RateLimited(errors.TemporarilyUnavailable):
    """The client sent more requests than its rule allows in one window.

    Deviation: the token and registration endpoints have no rate-limit error
    code (RFC 6749 §5.2, RFC 7591 §3.2.2). frontauth returns 429 (RFC 6585 §4)
    with ``temporarily_unavailable``, the code RFC 6749 §4.1.2.1 gives an
    overloaded server. It does not use ``slow_down``, because RFC 8628 §3.5
    defines it for device-code polling and tells the client to add 5 s to its
    polling interval, which has no meaning for a code or refresh grant.
    """

    status = 429


@attrs.frozen
class Rule:
    """A sliding window: at most ``max_requests`` requests in ``window`` seconds."""

    window: float = DEFAULT_WINDOW
    max_requests: int = DEFAULT_MAX_REQUESTS


@attrs.define
class RuleStats:
    """Counts of requests a rule allowed and rejected since start-up, in this process."""

    allowed: int = 0
    limited: int = 0


class RateLimiter:
    """Sliding-window counters per key, over one storage driver.

    Args:
        driver: the storage driver whose ``hit`` keeps the windows.
        prefix: the storage key prefix (``storage.prefix``).
        rules: rule name -> rule; ``"default"`` is used when a call names none.
        clock: wall-clock time in seconds. Instances that share a Redis must
            agree on it, so it is ``time.time`` outside tests.
        cleanup_interval: seconds between sweeps of expired windows when the
            driver keeps them in this process; 0 turns the sweep off.
    """

    def __init__(
        self,
        driver: Driver,
        prefix: str = "frontauth:",
        rules: typing.Mapping[str, Rule] | None = None,
        *,
        clock: Clock = time.time,
        cleanup_interval: float = 60.0,
    ) -> None:
        self.driver = driver
        self.prefix = prefix
        self.rules = dict(rules or {"default": Rule()})
        self.clock = clock
        self.cleanup_interval = cleanup_interval
        self._stats = {name: RuleStats() for name in self.rules}
        self._cleanup_task: asyncio.Task[None] | None = None
        self._last_info_log: dict[str, float] = {}

    @classmethod
    def from_settings(cls, settings: Settings, driver: Driver, clock: Clock = time.time) -> RateLimiter:
        """Build the limiter with one rule per endpoint in ``ratelimit.endpoints``."""
        limits: RateLimitSettings = settings.ratelimit
        rules = {name: Rule(limits.window, limits.limit_for(name)) for name in limits.endpoints}
        return cls(
            driver, settings.storage.prefix, rules, clock=clock, cleanup_interval=limits.cleanup_interval
        )

    def _storage_key(self, rule: str, key: str) -> str:
        return f"{self.prefix}ratelimit:{rule}:{key}"

    def _rule(self, rule: str) -> Rule:
        try:
            return self.rules[rule]
        except KeyError:
            raise KeyError(f"unknown rate-limit rule {rule!r}; expected one of {', '.join(self.rules)}") from None

    async def hit(self, key: str, rule: str = "default") -> WindowState:
        """Count one request for ``key`` and return whether it fits in the window.

        Raises:
            StorageUnavailable: the driver cannot reach its backend.
        """
        limit = self._rule(rule)
        state = await self.driver.hit(self._storage_key(rule, key), limit.window, limit.max_requests, self.clock())
        self._count(rule, state)
        return state

    async def hit_and_get(
        self, key: str, rule: str, read_keys: typing.Sequence[str]
    ) -> tuple[WindowState, list[bytes | None]]:
        """Count one request as :meth:`hit` does, and read ``read_keys`` in the same storage round trip.

        Returns the window state and the stored values, in order. A value is
        None when its key is missing, and every value is None when the request
        is over the limit.

        Raises:
            StorageUnavailable: the driver cannot reach its backend.
        """
        limit = self._rule(rule)
        state, values = await self.driver.hit_and_get(
            self._storage_key(rule, key), limit.window, limit.max_requests, self.clock(), read_keys
        )
        self._count(rule, state)
        return state, values

    def _count(self, rule: str, state: WindowState) -> None:
        stats = self._stats[rule]
        if state.allowed:
            stats.allowed += 1
        else:
            stats.limited += 1

    async def would_allow(self, key: str, rule: str = "default") -> bool:
        """Return whether one more request for ``key`` would fit, without counting it."""
        limit = self._rule(rule)
        state = await self.driver.hit(
            self._storage_key(rule, key), limit.window, limit.max_requests, self.clock(), consume=False
        )
        return state.allowed

    def stats(self) -> dict[str, dict[str, int]]:
        """Return, per rule, the requests allowed and limited by this process since start-up."""
        return {name: {"allowed": counts.allowed, "limited": counts.limited} for name, counts in self._stats.items()}

    def should_log_info(self, rule: str) -> bool:
        """Return True at most once per LOG_INTERVAL per rule, so a flood logs one INFO line."""
        now = time.monotonic()
        last = self._last_info_log.get(rule)
        if last is not None and now - last < LOG_INTERVAL:
            return False
        self._last_info_log[rule] = now
        return True

    def start(self) -> None:
        """Start sweeping expired windows, when the driver keeps them in this process.

        NOTE: only the memory driver has ``purge_expired``. Redis windows are
        sorted sets that expire one window after their last request.
        """
        purge = getattr(self.driver, "purge_expired", None)
        if self.cleanup_interval > 0 and purge is not None and self._cleanup_task is None:
            self._cleanup_task = asyncio.get_running_loop().create_task(self._cleanup_loop(purge))

    async def _cleanup_loop(self, purge: typing.Callable[..., int]) -> None:
        longest = max((rule.window for rule in self.rules.values()), default=DEFAULT_WINDOW)
        while True:
            await asyncio.sleep(self.cleanup_interval)
            removed = purge(now_wall=self.clock(), max_window=longest)
            if removed:
                logger.debug("rate limiter cleanup removed %d expired keys", removed)

    async def close(self) -> None:
        """Stop the cleanup task."""
        if self._cleanup_task is not None:
            self._cleanup_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleanup_task
            self._cleanup_task = None


def client_address(request: web.Request, trust_proxy: bool) -> str:
    """Return the address a request came from.

    With ``trust_proxy`` the last ``X-Forwarded-For`` entry wins: the proxy in
    front appends the address it saw, while entries to its left come from the
    client and can be forged.
    """
    if trust_proxy:
        forwarded = request.headers.getall("X-Forwarded-For", [])
        entries = [entry.strip() for header in forwarded for entry in header.split(",") if entry.strip()]
        if entries:
            return entries[-1]
    return request.remote or "unknown"


def retry_after_seconds(state: WindowState) -> str:
    """Return a Retry-After value: whole seconds, at least 1 (RFC 9110 §10.2.3)."""
    return str(max(1, math.ceil(state.retry_after)))


def first_parameter(text: str, name: str) -> str | None:
    """Return the first value of ``name`` in urlencoded text, None when absent or empty.

    Lenient on purpose: the value only picks which records to read ahead, and
    the handler validates the parameters itself.
    """
    prefix = name + "="
    if prefix not in text:
        return None
    for pair in text.split("&"):
        if pair.startswith(prefix):
            return urllib.parse.unquote_plus(pair[len(prefix):]) or None
    return None


async def small_form(request: web.Request) -> str | None:
    """Return the body of a form request of at most READ_AHEAD_MAX_BODY bytes with a declared length.

    aiohttp keeps the bytes read, so the handler does not read the body again.
    """
    length = request.content_length
    if request.content_type != FORM_CONTENT_TYPE or length is None or length > READ_AHEAD_MAX_BODY:
        return None
    return (await request.read()).decode("utf-8", "replace")


async def read_ahead_keys(request: web.Request, endpoint: str, services: Services) -> list[str]:
    """Return the storage keys of the records the handler reads first, as far as the request names them.

    Authorization requests: the client (query ``client_id``) and the browser
    session (its cookie). Token requests: the client (HTTP Basic credentials
    or form ``client_id``) and the code or refresh token of the grant.
    """
    stores = services.stores
    keys: list[str] = []
    if endpoint == "authorize":
        client_id = first_parameter(request.rel_url.raw_query_string, "client_id")
        if client_id and services.clients.is_stored(client_id):
            keys.append(stores.client_key(client_id))
        session_id = request.cookies.get(services.settings.session.cookie_name)
        if session_id and len(session_id) <= MAX_SESSION_COOKIE:
            keys.append(stores.session_key(session_id))
        return keys
    if endpoint != "token":
        return keys
    form = await small_form(request)
    client_id = basic_client_id(request.headers.get("Authorization"))
    if not client_id and form is not None:
        client_id = first_parameter(form, "client_id")
    if client_id and services.clients.is_stored(client_id):
        keys.append(stores.client_key(client_id))
    if form is None:
        return keys
    grant_type = first_parameter(form, "grant_type")
    if grant_type == "authorization_code":
        code = first_parameter(form, "code")
        if code:
            keys.append(stores.code_key(code))
    elif grant_type == "refresh_token":
        token = first_parameter(form, "refresh_token")
        if token:
            keys.append(stores.refresh_key(token))
    return keys


async def count_request(
    request: web.Request, limiter: RateLimiter, services: Services, endpoint: str, address: str
) -> WindowState:
    """Count the request against its endpoint's rule, reading ahead the records it names in the same round trip."""
    if not services.stores.saves_round_trips:
        # In process there is no round trip to save, only the parsing of the hints.
        return await limiter.hit(address, endpoint)
    keys = await read_ahead_keys(request, endpoint, services)
    if not keys:
        return await limiter.hit(address, endpoint)
    state, values = await limiter.hit_and_get(address, endpoint, keys)
    if state.allowed:
        services.stores.keep_read_ahead(keys, values)
    return state


RATE_LIMITER = web.AppKey("frontauth_rate_limiter", RateLimiter)


async def admit(request: web.Request) -> web.StreamResponse | None:
    """Count the request against its endpoint's rule, and return the 429 response when it is over the limit.

    Returns None when the request may go on: its endpoint has no rule, or
    the request fits in the window. The caller runs it inside
    ``stores.RequestReadAhead()``, which keeps the records read ahead here
    for the handler. A storage outage while counting raises
    StorageUnavailable, which the caller renders as the usual 503
    ``temporarily_unavailable``.
    """
    limiter = request.app.get(RATE_LIMITER)
    endpoint = ENDPOINT_ROUTES.get((request.method, request.path))
    if limiter is None or endpoint is None or endpoint not in limiter.rules:
        return None
    services = request.app[SERVICES]
    address = client_address(request, services.settings.server.trust_proxy)
    state = await count_request(request, limiter, services, endpoint, address)
    if state.allowed:
        return None
    retry_after = retry_after_seconds(state)
    if limiter.should_log_info(endpoint):
        logger.info("rate limit reached on %s %s for address %s (%d requests)", request.method, request.path, address, state.limit)
    else:
        logger.debug("rate limited %s %s for address %s", request.method, request.path, address)
    metrics = request.app.get(METRICS)
    if metrics is not None:
        metrics.rate_limited.labels(endpoint).inc()
    error = RateLimited(
        f"too many requests; retry after {retry_after} seconds", headers={"Retry-After": retry_after}
    )
    response = render_error(request, error)
    # The error page of browser endpoints does not carry the error's headers.
    response.headers["Retry-After"] = retry_after
    return response
