"""Storage operations and settings shared by the single-node and cluster Redis drivers.

Each operation of :class:`frontauth.storage.Driver` maps to one Redis command
or one Lua script. Redis itself makes each one atomic. All but hit_and_get
touch one key, so a cluster routes them by that key alone; the cluster driver
splits hit_and_get into one command per key (see drivers/redis_cluster.py). The
versions come from the Redis command reference:

| operation     | Redis command                          | since Redis |
|---------------|----------------------------------------|-------------|
| get           | GET                                    |             |
| set           | SET key value [PX ms]                  |             |
| set_if_absent | SET key value NX [PX ms]               |             |
| take          | GETDEL                                 | 6.2         |
| swap          | SET key value XX GET KEEPTTL           | 6.2         |
| delete        | DEL                                    |             |
| ttl           | PTTL                                   |             |
| hit           | EVALSHA of ``SLIDING_WINDOW_SCRIPT``   |             |
| hit_and_get   | EVALSHA of ``HIT_AND_GET_SCRIPT``      |             |
| ping          | PING                                   |             |

Every error of the Redis client except DataError (an argument of a wrong
type) is raised again as :class:`frontauth.storage.StorageUnavailable`, whose
reason is a fixed phrase and the error class name, never a key, a value or a
server message.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
import typing
import urllib.parse

import redis.exceptions as rex
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from frontauth.config import ConfigError
from frontauth.storage import StorageUnavailable, WindowState

if typing.TYPE_CHECKING:
    from frontauth.config import StorageSettings

logger = logging.getLogger("frontauth.storage")

T = typing.TypeVar("T")

# Backoff between retries of one command: exponential from 0.1 s, at most 1 s.
RETRY_BACKOFF_BASE = 0.1
RETRY_BACKOFF_CAP = 1.0

# Sliding-window rate limiter on one sorted set whose members are request ids
# and whose scores are request times in seconds. WINDOW_HIT_FUNCTION defines
# the Lua function hit(); the two scripts below call it.
#
# hit(key, now, window, limit, consume, member):
#   key      the window key
#   now      the time of this request, in seconds (float)
#   window   the window length, in seconds (float, > 0)
#   limit    the maximum number of requests per window (integer, >= 1)
#   consume  "1" to record this request when it is allowed, "0" to only check
#   member   a member id unique to this request
# returns {allowed (1 or 0), count, retry_after}. retry_after is a string
# because Redis truncates a Lua number to an integer on the way out.
#
# Requests at or before now - window have left the window and are removed.
# A rejected request is not recorded, so a client that keeps knocking does not
# extend its own lockout. A recorded request sets the key to expire after one
# window: by then every member has left the window, so idle keys disappear.
WINDOW_HIT_FUNCTION = """
local function hit(key, now, window, limit, consume, member)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)

  if count >= limit then
    local oldest = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
    local retry_after = tonumber(oldest[2]) + window - now
    if retry_after < 0 then
      retry_after = 0
    end
    return {0, count, tostring(retry_after)}
  end

  if consume == '1' then
    redis.call('ZADD', key, now, member)
    redis.call('PEXPIRE', key, math.ceil(window * 1000))
    count = count + 1
  end
  return {1, count, '0'}
end
"""

# KEYS[1] the window key; ARGV[1..5] now, window, limit, consume, member.
SLIDING_WINDOW_SCRIPT = WINDOW_HIT_FUNCTION + """
return hit(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5])
"""

# KEYS[1] the window key, KEYS[2..] the keys to read; ARGV[1..4] now, window,
# limit, member. Records the request like SLIDING_WINDOW_SCRIPT with consume
# "1", then reads KEYS[2..] only when the request is allowed. Returns the
# three values of hit() and an array of the values read, each nil when its
# key is missing or was not read.
HIT_AND_GET_SCRIPT = WINDOW_HIT_FUNCTION + """
local state = hit(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), '1', ARGV[4])
local values = {}
for i = 2, #KEYS do
  values[i - 1] = false
  if state[1] == 1 then
    values[i - 1] = redis.call('GET', KEYS[i])
  end
end
state[4] = values
return state
"""

# Exception class -> the phrase a StorageUnavailable reason starts with. The
# first match in this order wins, so subclasses come before their bases.
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (rex.AuthenticationError, "authentication failed"),
    (rex.AuthenticationWrongNumberOfArgsError, "authentication failed"),
    (rex.NoPermissionError, "permission denied by the Redis ACL"),
    (rex.MaxConnectionsError, "connection pool exhausted"),
    (rex.BusyLoadingError, "server is loading its data set"),
    (rex.ClusterDownError, "cluster is down"),
    (rex.SlotNotCoveredError, "cluster slot not covered"),
    (rex.TryAgainError, "cluster is resharding"),
    (rex.MasterDownError, "primary is down"),
    (rex.ReadOnlyError, "server is a read-only replica"),
    (rex.TimeoutError, "timed out"),
    (TimeoutError, "timed out"),
    (rex.ConnectionError, "connection failed"),
    (rex.RedisClusterUnreachableError, "no cluster node reachable"),
    (rex.RedisClusterException, "cluster client error"),
    (rex.ResponseError, "server rejected the command"),
    (OSError, "connection failed"),
)


def describe_error(exc: BaseException) -> str:
    """Return a StorageUnavailable reason for a Redis client error.

    The reason names the error class but carries none of its message, because
    server messages can echo arguments.
    """
    phrase = next((text for cls, text in _REASONS if isinstance(exc, cls)), "Redis error")
    return f"{phrase} ({type(exc).__name__})"


def split_netloc(netloc: str, settings: StorageSettings) -> tuple[str | None, str | None, str]:
    """Split a URL netloc into user name, password and host part.

    A password the URL leaves out comes from ``storage.redis_password``.
    Messages never echo the netloc, because it may hold the password.
    """
    userinfo, _, hosts = netloc.rpartition("@")
    username, has_password, password = userinfo.partition(":")
    username = urllib.parse.unquote(username) or None
    password = urllib.parse.unquote(password) if has_password else ""
    return username, password or settings.redis_password, hosts


def split_host_port(text: str, settings: StorageSettings) -> tuple[str, int]:
    """Parse ``host[:port]`` (IPv6 in brackets); fill gaps from settings, then localhost:6379.

    Raises:
        ConfigError: the port is not a number between 1 and 65535.
    """
    parts = urllib.parse.urlsplit("//" + text)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("storage.url", None, "invalid port; expected a number between 1 and 65535") from None
    host = parts.hostname or settings.redis_host or "localhost"
    return host, port or settings.redis_port or 6379


def check_no_query(parts: urllib.parse.SplitResult) -> None:
    """Reject URL query options, since pool and TLS options are storage settings."""
    if parts.query or parts.fragment:
        raise ConfigError(
            "storage.url", None, "must not carry a query or fragment; set pool and TLS options in [storage]"
        )


def expiry_ms(ttl: float) -> int:
    """Convert a TTL in seconds to the whole milliseconds that PX takes.

    NOTE: Redis rejects PX 0, so a TTL of zero or less becomes 1 ms: the key
    expires at once, as it does in the memory driver.
    """
    return max(1, math.ceil(ttl * 1000))


def tls_options(settings: StorageSettings, tls: bool) -> dict[str, typing.Any]:
    """Build the redis-py SSL keyword arguments from the storage settings.

    Raises:
        ConfigError: a TLS file is set for a plain-text URL, or is missing.
    """
    files = {"storage.tls_ca": settings.tls_ca, "storage.tls_cert": settings.tls_cert, "storage.tls_key": settings.tls_key}
    if not tls:
        for setting, path in files.items():
            if path:
                raise ConfigError(
                    setting, None, "is set but storage.url does not use TLS; use rediss:// or rediss+cluster://"
                )
        return {}
    for setting, path in files.items():
        if path and not os.path.isfile(path):
            raise ConfigError(setting, None, f"file {path!r} not found")
    if settings.tls_key and not settings.tls_cert:
        raise ConfigError("storage.tls_key", None, "is set without storage.tls_cert")
    return {
        "ssl": True,
        "ssl_cert_reqs": "required",
        "ssl_ca_certs": settings.tls_ca,
        "ssl_certfile": settings.tls_cert,
        "ssl_keyfile": settings.tls_key,
        "ssl_check_hostname": settings.tls_verify_hostname,
    }


def retry_policy(settings: StorageSettings, errors: tuple[type[Exception], ...]) -> Retry:
    """Build the redis-py retry policy: up to ``storage.retry_attempts`` retries on ``errors``.

    NOTE: a retry can repeat a command that already ran before its connection
    broke. Each repeat fails closed: take returns None, swap returns the value
    it wrote itself, set_if_absent returns False and hit counts the request twice.
    """
    backoff = ExponentialWithJitterBackoff(base=RETRY_BACKOFF_BASE, cap=RETRY_BACKOFF_CAP)
    return Retry(backoff=backoff, retries=settings.retry_attempts, supported_errors=errors)


async def wait_until_reachable(driver: RedisCommands, startup_wait: float) -> None:
    """Ping the backend until it replies or ``startup_wait`` seconds have passed.

    Raises:
        StorageUnavailable: the last ping failed and the wait is over.
    """
    deadline = time.monotonic() + startup_wait
    delay = 0.1
    while True:
        try:
            await driver.ping()
            return
        except StorageUnavailable as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise
            logger.warning(
                "%s storage not reachable yet (%s); retrying for up to %.1f s", driver.name, exc.reason, remaining
            )
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 2.0)


def check_window(window: float, limit: int) -> None:
    """Raise ValueError for a window or limit that no rate-limit rule can have."""
    if window <= 0 or limit < 1:
        raise ValueError(f"expected window > 0 and limit >= 1, got window={window}, limit={limit}")


def hit_arguments(window: float, limit: int, now: float, consume: bool) -> list[typing.Any]:
    """Build ARGV of ``SLIDING_WINDOW_SCRIPT``, with a fresh member id for this request.

    Raises:
        ValueError: the window or the limit is invalid.
    """
    check_window(window, limit)
    return [float(now), float(window), int(limit), "1" if consume else "0", os.urandom(12).hex()]


def hit_and_get_arguments(window: float, limit: int, now: float) -> list[typing.Any]:
    """Build ARGV of ``HIT_AND_GET_SCRIPT``, with a fresh member id for this request.

    Raises:
        ValueError: the window or the limit is invalid.
    """
    check_window(window, limit)
    return [float(now), float(window), int(limit), os.urandom(12).hex()]


def window_state(reply: typing.Sequence[typing.Any], limit: int) -> WindowState:
    """Convert the first three values that hit() returns into a WindowState."""
    allowed, count, retry_after = reply[0], reply[1], reply[2]
    return WindowState(allowed=bool(allowed), count=int(count), limit=limit, retry_after=float(retry_after))


def hit_and_get_result(
    reply: typing.Sequence[typing.Any], limit: int, key_count: int
) -> tuple[WindowState, list[bytes | None]]:
    """Convert a ``HIT_AND_GET_SCRIPT`` reply; a rejected request gets None for every key."""
    state = window_state(reply, limit)
    return state, list(reply[3]) if state.allowed else [None] * key_count


class RedisCommands:
    """The Driver operations over a redis-py asyncio client; the cluster driver builds on it.

    Subclasses pass the client and may override :meth:`_run` to wrap every
    command, for example to cap how many run at once.
    """

    name = "redis"

    def __init__(self, client: typing.Any) -> None:
        self._client = client
        self._hit_script = client.register_script(SLIDING_WINDOW_SCRIPT)
        self._hit_and_get_script = client.register_script(HIT_AND_GET_SCRIPT)

    async def _run(self, method: typing.Callable[..., typing.Awaitable[T]], *args: typing.Any, **kwargs: typing.Any) -> T:
        return await method(*args, **kwargs)

    async def _call(
        self, operation: str, method: typing.Callable[..., typing.Awaitable[T]], *args: typing.Any, **kwargs: typing.Any
    ) -> T:
        try:
            return await self._run(method, *args, **kwargs)
        # NOTE: DataError is left out on purpose. redis-py raises it before
        # sending anything, for arguments of a wrong type, which is a bug in
        # the caller and not an unavailable backend.
        except rex.DataError:
            raise
        # NOTE: the cluster client's own errors (no node reachable, slot not
        # covered) derive from RedisClusterException, not from RedisError.
        except (rex.RedisError, rex.RedisClusterException, OSError) as exc:
            raise StorageUnavailable(self.name, operation, describe_error(exc)) from exc

    async def get(self, key: str) -> bytes | None:
        return await self._call("get", self._client.get, key)

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        px = None if ttl is None else expiry_ms(ttl)
        await self._call("set", self._client.set, key, value, px=px)

    async def set_if_absent(self, key: str, value: bytes, ttl: float | None) -> bool:
        px = None if ttl is None else expiry_ms(ttl)
        stored = await self._call("set_if_absent", self._client.set, key, value, px=px, nx=True)
        return bool(stored)

    async def take(self, key: str) -> bytes | None:
        return await self._call("take", self._client.getdel, key)

    async def swap(self, key: str, value: bytes) -> bytes | None:
        # XX leaves a missing key missing, GET returns the old value in the same
        # step, and KEEPTTL keeps the remaining TTL (Redis SET command docs).
        return await self._call("swap", self._client.set, key, value, xx=True, get=True, keepttl=True)

    async def delete(self, key: str) -> bool:
        return bool(await self._call("delete", self._client.delete, key))

    async def ttl(self, key: str) -> float | None:
        # PTTL returns -2 for a missing key and -1 for a key without expiry.
        remaining_ms = await self._call("ttl", self._client.pttl, key)
        return None if remaining_ms < 0 else remaining_ms / 1000

    async def hit(
        self, key: str, window: float, limit: int, now: float, consume: bool = True
    ) -> WindowState:
        args = hit_arguments(window, limit, now, consume)
        reply = await self._call("hit", self._hit_script, keys=[key], args=args)
        return window_state(reply, limit)

    async def hit_and_get(
        self, window_key: str, window: float, limit: int, now: float, keys: typing.Sequence[str]
    ) -> tuple[WindowState, list[bytes | None]]:
        args = hit_and_get_arguments(window, limit, now)
        reply = await self._call("hit_and_get", self._hit_and_get_script, keys=[window_key, *keys], args=args)
        return hit_and_get_result(reply, limit, len(keys))

    async def ping(self) -> None:
        await self._call("ping", self._client.ping)

    async def close(self) -> None:
        await self._client.aclose()
