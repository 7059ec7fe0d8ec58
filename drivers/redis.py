"""Storage driver for one Redis server (``redis://`` and ``rediss://``).

URL: ``redis[s]://[user[:password]@][host[:port]][/db]``. A host, port or
password that the URL leaves out comes from ``storage.redis_host``,
``storage.redis_port`` and ``storage.redis_password`` (REDIS_HOST, REDIS_PORT,
REDIS_PASSWORD), and then from the Redis defaults localhost and 6379. The
``rediss`` scheme turns on TLS with the files named in ``storage.tls_*``.

The server must run Redis 6.2 or later, which added GETDEL and SET ... GET.

Up to ``storage.pool_size`` connections are open at once. A command that finds
them all busy waits for a free one for at most ``storage.command_timeout``.

Commands that concurrent requests issue in the same turn of the event loop go
to Redis as one pipeline (:class:`CommandBatcher`): one write and one read on
one connection instead of one each per command. Redis still runs each command
atomically, in the order they were issued. The pipeline has no MULTI, so it
makes no command atomic with another.
"""

from __future__ import annotations

import asyncio
import typing
import urllib.parse

import attrs
import redis.asyncio
import redis.commands.core
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

T = typing.TypeVar("T")
# Maximum number of commands in one pipeline; a queue that reaches it is sent at once.
MAX_BATCH = 128
# Client methods that RedisCommands calls with one key, by the Redis command they send.
SINGLE_KEY_COMMANDS = {"get": "GET", "getdel": "GETDEL", "delete": "DEL", "pttl": "PTTL", "ping": "PING"}
# Keyword arguments of the client's set() that QueuedCommand.wire_arguments translates.
SET_OPTIONS = frozenset({"px", "nx", "xx", "keepttl", "get"})


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


@attrs.define
class QueuedCommand:
    """One driver command waiting for the next pipeline, and the future its caller awaits."""

    method: typing.Any  # a bound method of the client, or a script from register_script
    args: tuple[typing.Any, ...]
    kwargs: dict[str, typing.Any]
    result: asyncio.Future[typing.Any]

    def wire_arguments(self) -> tuple[typing.Any, ...] | None:
        """Return the command as Redis receives it, or None for a call this module does not translate.

        The replies of these commands need no redis-py response callback:
        the driver reads the raw reply (bytes, an integer, b"OK" or nil).
        """
        if isinstance(self.method, redis.commands.core.AsyncScript):
            keys, script_args = self.kwargs["keys"], self.kwargs["args"]
            return ("EVALSHA", self.method.sha, len(keys), *keys, *script_args)
        name = getattr(self.method, "__name__", "")
        if name in SINGLE_KEY_COMMANDS and not self.kwargs:
            return (SINGLE_KEY_COMMANDS[name], *self.args)
        if name == "set" and len(self.args) == 2 and set(self.kwargs) <= SET_OPTIONS:
            arguments: list[typing.Any] = ["SET", *self.args]
            if self.kwargs.get("px") is not None:
                arguments += ["PX", self.kwargs["px"]]
            arguments += [flag.upper() for flag in ("nx", "xx", "keepttl", "get") if self.kwargs.get(flag)]
            return tuple(arguments)
        return None

    async def run_alone(self) -> None:
        """Run the command by itself, as the client would without batching, and settle its future."""
        try:
            value = await self.method(*self.args, **self.kwargs)
        except Exception as exc:
            if not self.result.done():
                self.result.set_exception(exc)
        else:
            if not self.result.done():
                self.result.set_result(value)


class CommandBatcher:
    """Sends the commands queued during one turn of the event loop as one pipeline.

    A command queued while a pipeline is in flight goes in the next one, which
    takes another pooled connection, so a slow pipeline does not hold up the
    others. Errors reach each command's caller as the client would raise them
    for that command alone: a reply error to its command, a connection error
    to every command of the pipeline.
    """

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._client = client
        self._pool = client.connection_pool
        self._queue: list[QueuedCommand] = []
        self._flush_scheduled = False
        self._in_flight: set[asyncio.Task[None]] = set()

    async def run(self, method: typing.Callable[..., typing.Awaitable[T]], *args: typing.Any, **kwargs: typing.Any) -> T:
        loop = asyncio.get_running_loop()
        command = QueuedCommand(method, args, kwargs, loop.create_future())
        self._queue.append(command)
        if len(self._queue) >= MAX_BATCH:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return typing.cast(T, await command.result)

    def _flush(self) -> None:
        self._flush_scheduled = False
        # A caller cancelled before the flush (a timeout) never sends its command.
        batch = [command for command in self._queue if not command.result.done()]
        self._queue = []
        if batch:
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _send(self, batch: list[QueuedCommand]) -> None:
        wired = [(command, command.wire_arguments()) for command in batch]
        alone = [command.run_alone() for command, arguments in wired if arguments is None]
        batch = [command for command, arguments in wired if arguments is not None]
        if alone:
            await asyncio.gather(*alone)
        if not batch:
            return
        try:
            replies = await self._exchange([arguments for _, arguments in wired if arguments is not None])
        except rex.DataError:
            # An argument of a wrong type: run each command alone, so that
            # only the caller that passed it gets the error.
            await asyncio.gather(*(command.run_alone() for command in batch))
            return
        except Exception as exc:
            self._fail(batch, exc)
            return
        except BaseException:
            # Cancelled, as when the event loop shuts down: the callers see a failed connection.
            self._fail(batch, rex.ConnectionError("the pipeline was cancelled"))
            raise
        for command, reply in zip(batch, replies):
            if command.result.done():
                continue
            if isinstance(reply, rex.NoScriptError):
                # The server lost its scripts (a restart or SCRIPT FLUSH). The
                # script object loads its script again and retries the call.
                await command.run_alone()
            elif isinstance(reply, Exception):
                command.result.set_exception(reply)
            else:
                command.result.set_result(reply)

    async def _exchange(self, commands: list[tuple[typing.Any, ...]]) -> list[typing.Any]:
        """Send the commands in one write on one pooled connection and read their replies.

        An error reply takes the place of its command's reply. A connection
        error is retried on the connection's retry policy, as redis-py does
        for its own pipelines, and then raised.
        """
        connection = await self._pool.get_connection()
        try:
            return typing.cast(
                list[typing.Any],
                await connection.retry.call_with_retry(
                    lambda: self._send_and_read(connection, commands), lambda error: connection.disconnect()
                ),
            )
        finally:
            await self._pool.release(connection)

    @staticmethod
    async def _send_and_read(connection: typing.Any, commands: list[tuple[typing.Any, ...]]) -> list[typing.Any]:
        await connection.send_packed_command(connection.pack_commands(commands))
        replies: list[typing.Any] = []
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except rex.ResponseError as error:
                # The reply was read in full, so the connection stays in step.
                replies.append(error)
        return replies

    @staticmethod
    def _fail(batch: list[QueuedCommand], error: Exception) -> None:
        for command in batch:
            if not command.result.done():
                command.result.set_exception(error)

    async def close(self) -> None:
        """Fail the queued commands and wait for the pipelines in flight."""
        self._fail(self._queue, rex.ConnectionError("the driver was closed"))
        self._queue = []
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)


class RedisDriver(RedisCommands):
    """Driver over a redis-py asyncio client with a blocking connection pool and command batching."""

    name = "redis"

    def __init__(self, client: redis.asyncio.Redis) -> None:
        super().__init__(client)
        self._batcher = CommandBatcher(client)

    async def _run(self, method: typing.Callable[..., typing.Awaitable[T]], *args: typing.Any, **kwargs: typing.Any) -> T:
        return await self._batcher.run(method, *args, **kwargs)

    async def close(self) -> None:
        await self._batcher.close()
        await super().close()


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
