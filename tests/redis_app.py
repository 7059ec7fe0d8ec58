"""Local-mode apps on the Redis drivers, and reading back what they stored.

A ``RedisTarget`` is one Redis deployment from ``tests/redis_servers.py``: one
server, or the TLS cluster. It writes frontauth's ``[storage]`` settings for
that deployment. It also lists every key under a test's prefix, with
synchronous clients on the nodes that hold data.
"""

from __future__ import annotations

import json
import typing
import uuid

import attrs
import redis

from tests.redis_servers import HOST, PASSWORD, RedisCluster, RedisServer
from tests.tls_files import TlsFiles


@attrs.frozen
class StoredKey:
    """One key as Redis reports it: type, remaining TTL and raw contents."""

    name: str
    kind: str
    ttl_ms: int  # PTTL: -1 without expiry
    contents: bytes  # GET for strings, DUMP for every other type


@attrs.frozen
class RedisTarget:
    """A Redis deployment under test and the storage URL that reaches it."""

    url: str
    tls: TlsFiles | None
    primaries: typing.Callable[[], list[RedisServer]]

    def storage_toml(self, prefix: str, **options: typing.Any) -> str:
        """Return the ``[storage]`` table for this deployment, with extra settings."""
        values: dict[str, typing.Any] = {"url": self.url, "prefix": prefix}
        if self.tls is not None:
            values.update(tls_ca=self.tls.ca, tls_cert=self.tls.client_cert, tls_key=self.tls.client_key)
        values.update(options)
        # JSON strings and numbers are valid TOML values.
        lines = [f"{name} = {json.dumps(value)}" for name, value in values.items()]
        return "[storage]\n" + "\n".join(lines) + "\n"

    def stored_keys(self, prefix: str) -> dict[str, StoredKey]:
        """List every key under ``prefix`` on every primary, with SCAN."""
        found: dict[str, StoredKey] = {}
        for node in self.primaries():
            with node.client() as client:
                for raw_name in client.scan_iter(match=prefix + "*", count=500):
                    entry = _read_key(client, raw_name)
                    if entry is not None:
                        found[entry.name] = entry
        return found


def _read_key(client: redis.Redis, raw_name: bytes) -> StoredKey | None:
    kind = client.type(raw_name).decode()
    if kind == "none":  # expired between SCAN and TYPE
        return None
    contents = client.get(raw_name) if kind == "string" else client.dump(raw_name)
    return StoredKey(raw_name.decode(), kind, int(client.pttl(raw_name)), contents or b"")


def plain_target(server: RedisServer) -> RedisTarget:
    return RedisTarget(f"redis://:{PASSWORD}@{HOST}:{server.port}/0", None, lambda: [server])


def cluster_target(cluster: RedisCluster, tls: TlsFiles) -> RedisTarget:
    return RedisTarget(f"rediss+cluster://:{PASSWORD}@{cluster.seeds}/", tls, cluster.primaries)


def unique_prefix() -> str:
    """Return a key prefix that no other test uses, so tests can share one server."""
    return f"frontauth-test:{uuid.uuid4().hex[:12]}:"


async def start_app(
    aiohttp_client: typing.Any,
    make_settings: typing.Callable[..., typing.Any],
    target: RedisTarget,
    prefix: str,
    extra_toml: str = "",
    **storage_options: typing.Any,
) -> typing.Any:
    """Start a local-mode app whose driver opens from the settings, as in ``serve``.

    Returns:
        The app's aiohttp test client.
    """
    from frontauth.app import create_app

    settings = make_settings(extra_toml + target.storage_toml(prefix, **storage_options))
    return await aiohttp_client(create_app(settings))


def target_for(case: str, request: typing.Any) -> RedisTarget:
    """Return the target of a parametrized case: ``redis`` or ``rediss+cluster``."""
    if case == "redis":
        return plain_target(request.getfixturevalue("redis_plain"))
    return cluster_target(request.getfixturevalue("redis_cluster_tls"), request.getfixturevalue("redis_tls_files"))
