"""Storage driver for one Redis server (``redis://`` and ``rediss://``).

URL: ``redis[s]://[user[:password]@][host[:port]][/db]``. A host, port or
password that the URL leaves out comes from ``storage.redis_host``,
``storage.redis_port`` and ``storage.redis_password`` (REDIS_HOST, REDIS_PORT,
REDIS_PASSWORD), and then from the Redis defaults localhost and 6379. The
``rediss`` scheme turns on TLS with the files named in ``storage.tls_*``.

The server must run Redis 6.2 or later, which added GETDEL and SET ... GET.

Up to ``storage.pool_size`` connections are open at once. A command that finds
them all busy waits for a free one for at most ``storage.command_timeout``.
"""

from __future__ import annotations

import typing
import urllib.parse

import attrs
import redis.asyncio
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

if typing.TYPE_CHECKING:
    from frontauth.config import StorageSettings


@attrs.frozen
class RedisAddress:
    """Connection parameters of one Redis server."""

    host: str
    port: int
    db: int
    tls: bool
    username: str | None
    password: str | None = attrs.field(repr=False)


def parse_url(settings: StorageSettings) -> RedisAddress:
    """Read the server address from ``storage.url`` and the fallback settings.

    Raises:
        ConfigError: the URL has an invalid port or database, or a query.
    """
    parts = urllib.parse.urlsplit(settings.url)
    check_no_query(parts)
    username, password, hosts = split_netloc(parts.netloc, settings)
    if "," in hosts:
        raise ConfigError("storage.url", None, "lists several hosts; use redis+cluster:// for a Redis Cluster")
    host, port = split_host_port(hosts, settings)
    db_text = parts.path.strip("/") or "0"
    if not db_text.isdigit():
        raise ConfigError("storage.url", None, f"expected a database number after the host, got {db_text!r}")
    return RedisAddress(
        host=host,
        port=port,
        db=int(db_text),
        tls=parts.scheme.lower() == "rediss",
        username=username,
        password=password,
    )


class RedisDriver(RedisCommands):
    """Driver over a redis-py asyncio client with a blocking connection pool."""

    name = "redis"


def connection_pool(settings: StorageSettings, address: RedisAddress) -> redis.asyncio.BlockingConnectionPool:
    """Build the connection pool for one server from the settings."""
    tls = tls_options(settings, address.tls)
    ssl_options = {key: value for key, value in tls.items() if key != "ssl"}
    connection_class = redis.asyncio.SSLConnection if tls else redis.asyncio.Connection
    # Only connection errors are retried. A command that timed out may still
    # run on the server, and retrying it would multiply command_timeout.
    return redis.asyncio.BlockingConnectionPool(
        max_connections=settings.pool_size,
        timeout=settings.command_timeout,
        connection_class=connection_class,
        host=address.host,
        port=address.port,
        db=address.db,
        username=address.username,
        password=address.password,
        socket_connect_timeout=settings.connect_timeout,
        socket_timeout=settings.command_timeout,
        retry=retry_policy(settings, (rex.ConnectionError,)),
        **ssl_options,
    )


async def open_redis(settings: StorageSettings) -> RedisDriver:
    """Connect to the Redis server that ``storage.url`` names.

    Waits up to ``storage.startup_wait`` seconds for the server to reply to PING.

    Raises:
        ConfigError: the URL or a TLS setting is invalid.
        StorageUnavailable: the server did not reply in time.
    """
    address = parse_url(settings)
    client = redis.asyncio.Redis.from_pool(connection_pool(settings, address))
    driver = RedisDriver(client)
    try:
        await wait_until_reachable(driver, settings.startup_wait)
    except BaseException:
        await driver.close()
        raise
    return driver
