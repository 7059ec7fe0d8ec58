"""The servers the benchmark measures, and how each one is started.

A target names a server set-up, the endpoints the load driver calls on it and
the scenarios it takes part in. ``start`` returns the running server and, for
frontauth on Redis, the private redis-server behind it, or for frontauth on
SQLite, the path of its database file.
"""

from __future__ import annotations

import os
import shutil
import sys
import typing

import attrs

from bench import install
from bench.browser import Endpoints
from bench.source import FrontauthSource
from bench.sqlitestats import database_path
from bench.servers import RedisServer, ServerProcess, frontauth_server, free_port

FRONTAUTH_ENDPOINTS = Endpoints(token="/oauth/token", register="/oauth/register", authorize="/oauth/authorize")
# frontauth's default key prefix; the Redis and SQLite statistics look under it.
FRONTAUTH_PREFIX = "frontauth:"
# Seconds between the SQLite driver's sweeps of expired rows, far below the
# default of 60 s so that every measured window includes several sweeps.
SQLITE_CLEANUP_INTERVAL = 2.0


@attrs.frozen
class Context:
    """What every target of one invocation shares."""

    sign_key: dict[str, str] = attrs.field(repr=False)
    frontauth: FrontauthSource


@attrs.define
class Running:
    """A started target: its server, and the Redis server or SQLite file behind frontauth."""

    server: ServerProcess
    redis: RedisServer | None = None
    # The database file of frontauth on SQLite; its folder is deleted on stop.
    sqlite_path: str | None = None

    @property
    def base_url(self) -> str:
        return self.server.base_url

    async def stop(self) -> None:
        await self.server.stop()
        if self.redis is not None:
            await self.redis.stop()
        if self.sqlite_path is not None:
            shutil.rmtree(os.path.dirname(self.sqlite_path), ignore_errors=True)


@attrs.frozen
class Target:
    """One server set-up under test.

    Attributes:
        key: short name used on the command line and in the tables.
        label: what the tables call it.
        scenarios: the load scenarios it takes part in ("flow", "refresh").
        endpoints: paths the load driver calls.
        peer: whether it is a peer (installed by ``--peers``) rather than frontauth.
    """

    key: str
    label: str
    scenarios: tuple[str, ...]
    endpoints: Endpoints
    peer: bool
    launcher: typing.Callable[[str, Context], typing.Awaitable[Running]] = attrs.field(repr=False)

    async def start(self, workdir: str, context: Context) -> Running:
        return await self.launcher(workdir, context)


def _frontauth(storage: str, event_loop: str | None = None) -> typing.Callable[[str, Context], typing.Awaitable[Running]]:
    async def launch(workdir: str, context: Context) -> Running:
        redis = None
        sqlite_path = None
        url = "memory://"
        storage_extra: dict[str, float] = {}
        if storage == "redis":
            redis = RedisServer(workdir)
            await redis.start()
            url = redis.url
        elif storage == "sqlite":
            # A new, empty folder per cell: the file, its -wal and its -shm.
            folder = os.path.join(workdir, "sqlite")
            shutil.rmtree(folder, ignore_errors=True)
            os.makedirs(folder)
            sqlite_path = database_path(folder)
            # Four slashes: an absolute path.
            url = "sqlite:///" + os.path.abspath(sqlite_path)
            storage_extra["cleanup_interval"] = SQLITE_CLEANUP_INTERVAL
        server = frontauth_server(workdir, storage_url=url, sign_key=context.sign_key, source=context.frontauth,
                                  event_loop=event_loop, storage_extra=storage_extra)
        running = Running(server, redis, sqlite_path)
        try:
            await server.start()
        except BaseException:
            await running.stop()
            raise
        return running

    return launch


async def _launch_oidc_provider(workdir: str, context: Context) -> Running:
    script = install.ensure_oidc_provider()
    port = free_port()
    env = {**os.environ, "NODE_ENV": "production"}
    server = ServerProcess("oidc-provider", ["node", script, str(port)], port=port,
                           ready_path="/.well-known/openid-configuration",
                           log_path=os.path.join(workdir, "server.log"), cwd=os.path.dirname(script), env=env)
    await server.start()
    return Running(server)


async def _launch_fastmcp(workdir: str, context: Context) -> Running:
    python = install.ensure_fastmcp()
    port = free_port()
    script = os.path.join(install.PEERS_DIR, "fastmcp_server.py")
    server = ServerProcess("fastmcp", [python, script, str(port)], port=port,
                           ready_path="/.well-known/oauth-authorization-server",
                           log_path=os.path.join(workdir, "server.log"), cwd=workdir)
    await server.start()
    return Running(server)


async def _launch_bare(workdir: str, context: Context) -> Running:
    port = free_port()
    script = os.path.join(install.PEERS_DIR, "bare_token.py")
    server = ServerProcess("bare aiohttp", [sys.executable, script, str(port)], port=port, ready_path="/healthz",
                           log_path=os.path.join(workdir, "server.log"), cwd=workdir)
    await server.start()
    return Running(server)


BOTH = ("flow", "refresh")

TARGETS: dict[str, Target] = {
    target.key: target
    for target in (
        Target("frontauth-memory", "frontauth, memory driver", BOTH, FRONTAUTH_ENDPOINTS, False, _frontauth("memory")),
        Target("frontauth-redis", "frontauth, Redis driver", BOTH, FRONTAUTH_ENDPOINTS, False, _frontauth("redis")),
        Target("frontauth-sqlite", "frontauth, SQLite driver", BOTH, FRONTAUTH_ENDPOINTS, False, _frontauth("sqlite")),
        Target("frontauth-memory-asyncio", "frontauth, memory driver, server.event_loop = asyncio", BOTH,
               FRONTAUTH_ENDPOINTS, False, _frontauth("memory", event_loop="asyncio")),
        Target("oidc-provider", "node-oidc-provider, in-memory adapter", BOTH,
               # A "web" client: the library requests consent from a "native" client on
               # every authorization, which would leave no steady state to measure.
               Endpoints(token="/token", register="/reg", authorize="/auth"),
               True, _launch_oidc_provider),
        Target("fastmcp", "FastMCP in-memory OAuth provider, uvicorn + uvloop", BOTH,
               Endpoints(token="/token", register="/register", authorize="/authorize", register_extra={"scope": "mcp"}),
               True, _launch_fastmcp),
        Target("bare-aiohttp", "bare aiohttp handler: parse form, sign ES256 JWT", ("refresh",),
               Endpoints(token="/token"), True, _launch_bare),
    )
}

FRONTAUTH_DEFAULT = ("frontauth-memory", "frontauth-redis", "frontauth-sqlite")
PEERS_DEFAULT = ("oidc-provider", "fastmcp", "bare-aiohttp")
