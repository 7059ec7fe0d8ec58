"""Start and stop the servers under test, each a subprocess on a loopback port.

Every server is started by this module, listens on 127.0.0.1 on a free port
that the kernel picked, and is stopped by its process id: SIGTERM, then
SIGKILL after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import typing

import aiohttp

from bench.loopback import LOOPBACK_HOST, check_loopback
from bench.source import FrontauthSource

START_TIMEOUT = 30.0
STOP_GRACE = 10.0
# The Redis that this kind of machine runs for every project listens here; the
# benchmark must never send its load to it.
SHARED_REDIS_PORT = 6379
# Requests per second that one client address may send before frontauth's rate
# limiter responds 429: far above what one load worker sends.
RATE_LIMIT_NEVER_REACHED = 1_000_000


def free_port() -> int:
    """Return a TCP port on the loopback interface that is free right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK_HOST, 0))
            port = sock.getsockname()[1]
        if port != SHARED_REDIS_PORT:
            return port


class StartFailed(RuntimeError):
    """A server did not become ready; the message carries the tail of its log."""


class ServerProcess:
    """One server subprocess, its log file and its readiness check."""

    def __init__(self, name: str, argv: list[str], *, port: int, ready_path: str, log_path: str,
                 cwd: str | None = None, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.base_url = f"http://{LOOPBACK_HOST}:{port}"
        check_loopback(self.base_url)
        self.ready_path = ready_path
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self.process: asyncio.subprocess.Process | None = None
        self._log: typing.IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server is not running"
        return self.process.pid

    async def start(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = await asyncio.create_subprocess_exec(
            *self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        url = self.base_url + self.ready_path
        timeout = aiohttp.ClientTimeout(total=2.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.returncode is not None:
                    break
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)
        await self.stop()
        raise StartFailed(f"{self.name} did not respond 200 on {url} within {START_TIMEOUT:.0f} s; "
                          f"log {self.log_path}:\n{tail(self.log_path)}")

    async def stop(self) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                await process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except OSError as exc:
        return f"(cannot read the log: {exc})"


# ---------------------------------------------------------------------------
# frontauth


def frontauth_config(path: str, *, port: int, storage_url: str, sign_key: dict[str, str], state_dir: str,
                     sections: frozenset[str], storage_extra: typing.Mapping[str, float] | None = None,
                     event_loop: str | None = None) -> None:
    """Write the TOML file the benchmark serves frontauth with.

    The rate limiter stays on, so its bookkeeping is part of every measured
    request, but with a 1 s window and a limit it never reaches. Each load
    worker connects from its own loopback address, so each window counts the
    requests of one client, as it would with real clients. ``event_loop``
    sets server.event_loop; None keeps frontauth's default.
    """
    lines = [
        'profile = "development"',
        f'public_url = "http://{LOOPBACK_HOST}:{port}"',
        "[server]",
        f"state_dir = {json.dumps(state_dir)}",
        *([f"event_loop = {json.dumps(event_loop)}"] if event_loop else []),
        "[storage]",
        f"url = {json.dumps(storage_url)}",
        *(f"{name} = {value!r}" for name, value in (storage_extra or {}).items()),
        "[keys]",
        f"sign_key = {json.dumps(json.dumps(sign_key))}",
        "[logging]",
        'level = "WARNING"',
    ]
    if "ratelimit" in sections:
        lines += ["[ratelimit]", "window = 1.0", f"max_requests = {RATE_LIMIT_NEVER_REACHED}"]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def frontauth_server(workdir: str, *, storage_url: str, sign_key: dict[str, str], source: FrontauthSource,
                     event_loop: str | None = None,
                     storage_extra: typing.Mapping[str, float] | None = None) -> ServerProcess:
    port = free_port()
    config_path = os.path.join(workdir, "frontauth.toml")
    frontauth_config(config_path, port=port, storage_url=storage_url, sign_key=sign_key,
                     state_dir=os.path.join(workdir, "state"), sections=source.settings_sections,
                     storage_extra=storage_extra, event_loop=event_loop)
    argv = [sys.executable, "-m", "frontauth", "serve", "--config", config_path, "--host", LOOPBACK_HOST,
            "--port", str(port)]
    return ServerProcess("frontauth", argv, port=port, ready_path="/healthz",
                         log_path=os.path.join(workdir, "server.log"), cwd=workdir, env=source.env())


# ---------------------------------------------------------------------------
# Redis


class RedisServer(ServerProcess):
    """A private redis-server on a free loopback port, keeping nothing on disk."""

    def __init__(self, workdir: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise StartFailed("redis-server is not installed; install it (apt-get install redis-server) "
                              "or leave out the Redis targets")
        port = free_port()
        argv = [binary, "--port", str(port), "--bind", LOOPBACK_HOST, "--save", "", "--appendonly", "no",
                "--dir", workdir, "--daemonize", "no", "--protected-mode", "yes"]
        super().__init__("redis-server", argv, port=port, ready_path="", log_path=os.path.join(workdir, "redis.log"))
        self.url = f"redis://{LOOPBACK_HOST}:{port}/0"

    async def _wait_ready(self) -> None:
        import redis.asyncio as redis_asyncio

        deadline = time.monotonic() + START_TIMEOUT
        client = redis_asyncio.Redis(host=LOOPBACK_HOST, port=self.port, socket_timeout=2.0)
        try:
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError, redis_asyncio.RedisError):
                    if await client.ping():
                        return
                await asyncio.sleep(0.1)
        finally:
            await client.aclose()
        await self.stop()
        raise StartFailed(f"redis-server did not respond to PING on port {self.port}; log:\n{tail(self.log_path)}")


def redis_version() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        return "not installed"
    output = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    for part in output.split():
        if part.startswith("v="):
            return part[2:]
    return output.strip()
