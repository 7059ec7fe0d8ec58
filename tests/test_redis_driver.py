"""Redis and Redis Cluster drivers: URLs, TLS settings, errors and fail-over.

The operations themselves are covered for every driver by
``test_driver_contract.py``. This file covers what only the Redis drivers
have: URL parsing with fallback settings, TLS checks, error reasons, the
window key's expiry, slot spreading and a primary fail-over.
"""

from __future__ import annotations

import asyncio
import pathlib
import typing
import uuid

import pytest
import redis.exceptions as rex

from frontauth.config import ConfigError, StorageSettings
from frontauth.drivers import open_driver
from frontauth.drivers.redis import RedisAddress, parse_url
from frontauth.drivers.redis_base import describe_error, expiry_ms, tls_options
from frontauth.drivers.redis_cluster import ClusterAddress, parse_cluster_url
from frontauth.storage import StorageUnavailable
from tests.redis_servers import HOST, PASSWORD, RedisCluster, RedisServer, TlsFiles, start_tls_cluster

# --- URL parsing


@pytest.mark.parametrize(
    ("url", "fallback", "expected"),
    [
        pytest.param("redis://", {}, RedisAddress("localhost", 6379, 0, False, None, None), id="defaults"),
        pytest.param(
            "redis://",
            {"redis_host": "cache.internal", "redis_port": 6380, "redis_password": "from-env"},
            RedisAddress("cache.internal", 6380, 0, False, None, "from-env"),
            id="settings-fill-gaps",
        ),
        pytest.param(
            "rediss://app:p%40ss@db.example:7000/2",
            {"redis_host": "ignored", "redis_port": 1, "redis_password": "ignored"},
            RedisAddress("db.example", 7000, 2, True, "app", "p@ss"),
            id="url-wins",
        ),
        pytest.param(
            "redis://app@db.example",
            {"redis_password": "from-env"},
            RedisAddress("db.example", 6379, 0, False, "app", "from-env"),
            id="acl-user-password-from-settings",
        ),
        pytest.param("redis://[::1]:7001/", {}, RedisAddress("::1", 7001, 0, False, None, None), id="ipv6"),
    ],
)
def test_parse_url(url: str, fallback: dict[str, typing.Any], expected: RedisAddress) -> None:
    assert parse_url(StorageSettings(url=url, **fallback)) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param(
            "redis://:secret@host:99999/0",
            "invalid setting storage.url: invalid port; expected a number between 1 and 65535",
            id="port-out-of-range",
        ),
        pytest.param(
            "redis://:secret@host/db1",
            "invalid setting storage.url: expected a database number after the host, got 'db1'",
            id="database-not-a-number",
        ),
        pytest.param(
            "redis://:secret@host/0?ssl_cert_reqs=none",
            "invalid setting storage.url: must not carry a query or fragment; set pool and TLS options in [storage]",
            id="query",
        ),
        pytest.param(
            "redis://:secret@a:1,b:2/0",
            "invalid setting storage.url: lists several hosts; use redis+cluster:// for a Redis Cluster",
            id="several-hosts",
        ),
    ],
)
def test_parse_url_rejects(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_url(StorageSettings(url=url))
    assert str(raised.value) == message
    assert "secret" not in str(raised.value)


def test_parse_cluster_url_seeds() -> None:
    settings = StorageSettings(url="rediss+cluster://app:pw@10.0.0.1:7001, 10.0.0.2:7002,[::1]:7003/")
    assert parse_cluster_url(settings) == ClusterAddress(
        seeds=(("10.0.0.1", 7001), ("10.0.0.2", 7002), ("::1", 7003)), tls=True, username="app", password="pw"
    )


def test_parse_cluster_url_fallback() -> None:
    settings = StorageSettings(
        url="redis+cluster://", redis_host="seed.internal", redis_port=7000, redis_password="from-env"
    )
    assert parse_cluster_url(settings) == ClusterAddress(
        seeds=(("seed.internal", 7000),), tls=False, username=None, password="from-env"
    )


def test_parse_cluster_url_rejects_database() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_cluster_url(StorageSettings(url="redis+cluster://h:7000/3"))
    assert str(raised.value) == (
        "invalid setting storage.url: a Redis Cluster has only database 0; remove the path after the hosts"
    )


def test_address_repr_hides_password() -> None:
    address = parse_url(StorageSettings(url="redis://:hunter2@host"))
    assert "hunter2" not in repr(address)


# --- TLS settings and small helpers


def test_tls_options_for_rediss(tmp_path: pathlib.Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("placeholder")
    settings = StorageSettings(url="rediss://host", tls_ca=str(ca), tls_verify_hostname=False)
    assert tls_options(settings, tls=True) == {
        "ssl": True,
        "ssl_cert_reqs": "required",
        "ssl_ca_certs": str(ca),
        "ssl_certfile": None,
        "ssl_keyfile": None,
        "ssl_check_hostname": False,
    }


def test_tls_file_with_plain_url_rejected(tmp_path: pathlib.Path) -> None:
    settings = StorageSettings(url="redis://host", tls_ca=str(tmp_path / "ca.pem"))
    with pytest.raises(ConfigError) as raised:
        tls_options(settings, tls=False)
    assert str(raised.value) == (
        "invalid setting storage.tls_ca: is set but storage.url does not use TLS; use rediss:// or rediss+cluster://"
    )


def test_tls_missing_file_rejected(tmp_path: pathlib.Path) -> None:
    missing = str(tmp_path / "client.pem")
    settings = StorageSettings(url="rediss://host", tls_cert=missing)
    with pytest.raises(ConfigError) as raised:
        tls_options(settings, tls=True)
    assert str(raised.value) == f"invalid setting storage.tls_cert: file {missing!r} not found"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (rex.ConnectionError("Error 111 connecting to 10.1.2.3:6379"), "connection failed (ConnectionError)"),
        (rex.TimeoutError("Timeout reading from socket"), "timed out (TimeoutError)"),
        (rex.AuthenticationError("invalid username-password pair"), "authentication failed (AuthenticationError)"),
        (rex.MaxConnectionsError("Too many connections"), "connection pool exhausted (MaxConnectionsError)"),
        (rex.ClusterDownError("CLUSTERDOWN The cluster is down"), "cluster is down (ClusterDownError)"),
        (rex.ResponseError("WRONGTYPE key frontauth:code:abc"), "server rejected the command (ResponseError)"),
    ],
    ids=["connection", "timeout", "auth", "pool", "cluster-down", "response"],
)
def test_describe_error_drops_message(error: Exception, reason: str) -> None:
    assert describe_error(error) == reason


@pytest.mark.parametrize(("ttl", "expected"), [(60, 60000), (0.3, 300), (0.0001, 1), (0, 1), (-5, 1)])
def test_expiry_ms(ttl: float, expected: int) -> None:
    assert expiry_ms(ttl) == expected


# --- against real servers


async def test_settings_fill_missing_host_and_password(redis_plain: RedisServer) -> None:
    """redis:// with no host or password connects with the REDIS_* settings."""
    settings = StorageSettings(url="redis://", redis_host=HOST, redis_port=redis_plain.port, redis_password=PASSWORD)
    driver = await open_driver(settings)
    try:
        await driver.set("frontauth-test:fallback", b"ok", ttl=5)
        assert await driver.get("frontauth-test:fallback") == b"ok"
    finally:
        await driver.close()


async def test_wrong_password_raises_unavailable(redis_plain: RedisServer) -> None:
    settings = StorageSettings(url=f"redis://:wrong-password@{HOST}:{redis_plain.port}")
    with pytest.raises(StorageUnavailable) as raised:
        await open_driver(settings)
    assert raised.value.operation == "ping"
    assert raised.value.reason == "authentication failed (AuthenticationError)"
    assert "wrong-password" not in str(raised.value)


async def test_tls_without_client_cert_rejected(redis_tls: RedisServer, redis_tls_files: TlsFiles) -> None:
    """The TLS server requires a client certificate, so a client without one cannot connect."""
    settings = StorageSettings(
        url=f"rediss://:{PASSWORD}@{HOST}:{redis_tls.port}", tls_ca=redis_tls_files.ca, retry_attempts=0
    )
    with pytest.raises(StorageUnavailable) as raised:
        await open_driver(settings)
    assert raised.value.reason == "connection failed (ConnectionError)"


async def test_tls_untrusted_server_rejected(redis_tls: RedisServer, redis_tls_files: TlsFiles) -> None:
    """Without the test CA in tls_ca, the server certificate fails verification."""
    settings = StorageSettings(
        url=f"rediss://:{PASSWORD}@{HOST}:{redis_tls.port}",
        tls_cert=redis_tls_files.client_cert,
        tls_key=redis_tls_files.client_key,
        retry_attempts=0,
    )
    with pytest.raises(StorageUnavailable) as raised:
        await open_driver(settings)
    assert raised.value.reason == "connection failed (ConnectionError)"


async def test_tls_hostname_localhost_verifies(redis_tls: RedisServer, redis_tls_files: TlsFiles) -> None:
    """With hostname checks on, the certificate's localhost name matches."""
    settings = StorageSettings(
        url=f"rediss://:{PASSWORD}@localhost:{redis_tls.port}",
        tls_ca=redis_tls_files.ca,
        tls_cert=redis_tls_files.client_cert,
        tls_key=redis_tls_files.client_key,
    )
    driver = await open_driver(settings)
    await driver.close()


async def test_hit_key_expires_after_window(redis_plain: RedisServer) -> None:
    """A recorded hit sets the window key to expire one window later."""
    driver = await open_driver(StorageSettings(url=f"redis://:{PASSWORD}@{HOST}:{redis_plain.port}"))
    key = f"frontauth-test:{uuid.uuid4().hex}:rate"
    try:
        await driver.hit(key, window=30, limit=5, now=1000.0)
        remaining = await driver.ttl(key)
        assert remaining is not None
        assert 29.5 < remaining <= 30.0
        await driver.hit(key, window=0.3, limit=5, now=1000.0)
        await asyncio.sleep(0.4)
        assert await driver.ttl(key) is None
        assert (await driver.hit(key, window=30, limit=5, now=1000.0, consume=False)).count == 0
    finally:
        await driver.close()


def cluster_settings(cluster: RedisCluster, tls: TlsFiles, **options: typing.Any) -> StorageSettings:
    return StorageSettings(
        url=f"rediss+cluster://:{PASSWORD}@{cluster.seeds}/",
        tls_ca=tls.ca,
        tls_cert=tls.client_cert,
        tls_key=tls.client_key,
        **options,
    )


async def test_cluster_spreads_keys(redis_cluster_tls: RedisCluster, redis_tls_files: TlsFiles) -> None:
    """Keys land on all three primaries, so the driver follows the slot map."""
    driver = await open_driver(cluster_settings(redis_cluster_tls, redis_tls_files))
    prefix = f"frontauth-test:{uuid.uuid4().hex}:"
    try:
        for i in range(60):
            await driver.set(f"{prefix}{i}", b"v", ttl=30)
    finally:
        await driver.close()
    primaries = redis_cluster_tls.primaries()
    assert len(primaries) == 3
    for node in primaries:
        with node.client() as client:
            assert client.dbsize() > 0


async def test_cluster_survives_primary_failover(
    redis_server_binary: str, redis_tls_files: TlsFiles, tmp_path: pathlib.Path
) -> None:
    """After a primary is killed, reads and writes continue once its replica takes over."""
    cluster = start_tls_cluster(redis_server_binary, redis_tls_files, tmp_path)
    try:
        settings = cluster_settings(cluster, redis_tls_files, retry_attempts=25, command_timeout=1.0)
        driver = await open_driver(settings)
        try:
            keys = {f"frontauth-test:failover:{i}": f"value-{i}".encode() for i in range(30)}
            for key, value in keys.items():
                await driver.set(key, value, ttl=120)
            cluster.wait_for_replication()

            killed = cluster.kill_primary(0)
            # The driver retries until the replica has taken over, so the test does not wait first.
            for key, value in keys.items():
                assert await driver.get(key) == value
            await driver.set("frontauth-test:failover:after", b"written", ttl=120)
            assert await driver.take("frontauth-test:failover:after") == b"written"
            assert len(cluster.primaries()) == 3

            killed.restart()
            cluster.wait_until_ok()
            assert killed not in cluster.primaries()
            assert await driver.get("frontauth-test:failover:0") == b"value-0"
        finally:
            await driver.close()
    finally:
        cluster.stop()
