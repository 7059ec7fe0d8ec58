"""Storage driver for a Redis Cluster (``redis+cluster://`` and ``rediss+cluster://``).

URL: ``redis[s]+cluster://[user[:password]@]host:port[,host:port...][/]``. The
hosts are seed nodes: the client asks them for the slot map and then talks to
every primary directly. With no host in the URL, ``storage.redis_host`` and
``storage.redis_port`` name the one seed node. The ``rediss+cluster`` scheme
turns on TLS with the files named in ``storage.tls_*``, for the seed nodes and
for every node found through them.

Every driver operation but hit_and_get touches one key, so it runs on the
primary that owns the key's slot. hit_and_get sends one command per key at
once, because its keys may hash to slots on different primaries. redis-py follows MOVED and ASK redirections itself. After a
connection error, a timeout or CLUSTERDOWN it refreshes the slot map and tries
again, up to ``storage.retry_attempts`` times. A command outlasts a fail-over
only when those attempts and their backoff cover the server's
cluster-node-timeout plus the replica election.
"""

from __future__ import annotations

import asyncio
import typing
import urllib.parse

import attrs
import redis.asyncio.cluster
import redis.exceptions as rex

from frontauth.config import ConfigError
from frontauth.drivers.redis_base import (
    RedisCommands,
    check_no_query,
    retry_policy,
    split_host_port,
    split_netloc,
    tls_options,
    wait_until_reachable,
)
from frontauth.storage import WindowState

if typing.TYPE_CHECKING:
    from frontauth.config import StorageSettings

T = typing.TypeVar("T")


@attrs.frozen
class ClusterAddress:
    """The seed nodes of a cluster and how to connect to them."""

    seeds: tuple[tuple[str, int], ...]
    tls: bool
    username: str | None
    password: str | None = attrs.field(repr=False)


def parse_cluster_url(settings: StorageSettings) -> ClusterAddress:
    """Read the seed nodes from ``storage.url`` and the fallback settings.

    Raises:
        ConfigError: a seed has an invalid port, or the URL names a database
            or carries a query.
    """
    parts = urllib.parse.urlsplit(settings.url)
    check_no_query(parts)
    if parts.path.strip("/") not in ("", "0"):
        raise ConfigError("storage.url", None, "a Redis Cluster has only database 0; remove the path after the hosts")
    username, password, hosts = split_netloc(parts.netloc, settings)
    seeds = tuple(split_host_port(entry.strip(), settings) for entry in hosts.split(",") if entry.strip())
    if not seeds:
        seeds = (split_host_port("", settings),)
    return ClusterAddress(
        seeds=seeds,
        tls=parts.scheme.lower() == "rediss+cluster",
        username=username,
        password=password,
    )


class RedisClusterDriver(RedisCommands):
    """Driver over redis-py's asyncio cluster client.

    The cluster client raises MaxConnectionsError instead of waiting when a
    node's pool is full, so the driver lets at most ``pool_size`` commands run
    at once. A node then never needs more than ``pool_size`` connections, and
    further commands wait here for a turn.
    """

    name = "redis-cluster"

    def __init__(self, client: redis.asyncio.cluster.RedisCluster, max_in_flight: int) -> None:
        super().__init__(client)
        self._in_flight = asyncio.Semaphore(max_in_flight)

    async def _run(
        self, method: typing.Callable[..., typing.Awaitable[T]], *args: typing.Any, **kwargs: typing.Any
    ) -> T:
        async with self._in_flight:
            return await method(*args, **kwargs)

    async def hit_and_get(
        self, window_key: str, window: float, limit: int, now: float, keys: typing.Sequence[str]
    ) -> tuple[WindowState, list[bytes | None]]:
        # A script may only touch keys of one slot (CROSSSLOT), so the count
        # and each read are commands of their own, sent together. The reads
        # run even for a request over the limit, whose values are then dropped.
        state, *values = await asyncio.gather(
            self.hit(window_key, window, limit, now), *(self.get(key) for key in keys)
        )
        return state, list(values) if state.allowed else [None] * len(keys)


def cluster_client(settings: StorageSettings, address: ClusterAddress) -> redis.asyncio.cluster.RedisCluster:
    """Build the cluster client from the settings; it connects on first use."""
    seeds = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in address.seeds]
    return redis.asyncio.cluster.RedisCluster(
        startup_nodes=seeds,
        username=address.username,
        password=address.password,
        max_connections=settings.pool_size,
        socket_connect_timeout=settings.connect_timeout,
        socket_timeout=settings.command_timeout,
        # Only the number of retries and the backoff come from this policy. The
        # cluster client picks the retried errors itself (connection errors,
        # timeouts, CLUSTERDOWN, uncovered slots) and refreshes its slot map
        # between attempts when an error calls for it.
        retry=retry_policy(settings, (rex.ConnectionError, rex.TimeoutError)),
        **tls_options(settings, address.tls),
    )


async def open_redis_cluster(settings: StorageSettings) -> RedisClusterDriver:
    """Connect to the Redis Cluster that ``storage.url`` names.

    Waits up to ``storage.startup_wait`` seconds for the cluster to reply to PING.

    Raises:
        ConfigError: the URL or a TLS setting is invalid.
        StorageUnavailable: no seed node replied in time.
    """
    address = parse_cluster_url(settings)
    client = cluster_client(settings, address)
    driver = RedisClusterDriver(client, max_in_flight=settings.pool_size)
    try:
        await wait_until_reachable(driver, settings.startup_wait)
    except BaseException:
        await driver.close()
        raise
    return driver
