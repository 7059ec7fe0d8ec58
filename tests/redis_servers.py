"""pytest plugin: real ``redis-server`` processes for the storage driver tests.

Session fixtures start, on free loopback ports in temporary folders:

- ``redis_plain``: one plain-text server with a password and an ACL user;
- ``redis_tls``: one TLS-only server that requires a client certificate;
- ``redis_cluster_tls``: a TLS Redis Cluster of three primaries with one
  replica each, created with ``redis-cli --cluster create``.

``redis_server_factory`` starts throwaway servers that one test may stop and
restart. Every server keeps no data on disk (``--save "" --appendonly no``),
listens on 127.0.0.1 only, and is stopped by its PID when its fixture ends.
The port of the Redis that may already run on the machine (6379) is never used.

Without ``redis-server`` on PATH these fixtures skip the tests that need them,
except under CI=true, where a missing server is a failure.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time
import typing

import pytest
import redis

from tests.tls_files import TlsFiles, make_tls_files

HOST = "127.0.0.1"
RESERVED_PORTS = {6379, 16379}
# Test-only credentials of servers that live as long as the test session.
PASSWORD = "frontauth-test-password"
ACL_USER = "frontauth"
ACL_PASSWORD = "frontauth-acl-password"
START_TIMEOUT = 10.0
CLUSTER_TIMEOUT = 30.0


_handed_out_ports: set[int] = set()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now and no earlier call returned."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        if port not in RESERVED_PORTS and port not in _handed_out_ports:
            _handed_out_ports.add(port)
            return port


def find_binary(name: str) -> str:
    """Return the path of a Redis program; skip the test, or fail it under CI=true."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found on PATH; install it (Debian: apt-get install -y redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " before running the tests in CI", pytrace=False)
        pytest.skip(message)
    return path


class RedisServer:
    """One ``redis-server`` process on a fixed loopback port.

    ``stop`` and ``restart`` keep the port and the folder, so a cluster node
    that restarts finds its nodes.conf and rejoins.
    """

    def __init__(
        self,
        binary: str,
        folder: pathlib.Path,
        port: int,
        options: list[str],
        password: str | None = PASSWORD,
        tls: TlsFiles | None = None,
    ) -> None:
        self.binary = binary
        self.folder = folder
        self.port = port
        self.options = options
        self.password = password
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def log_file(self) -> pathlib.Path:
        return self.folder / "redis.log"

    def command_line(self) -> list[str]:
        base = [self.binary, "--bind", HOST, "--dir", str(self.folder), "--logfile", "redis.log"]
        base += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        if self.tls is None:
            base += ["--port", str(self.port)]
        else:
            base += ["--port", "0", "--tls-port", str(self.port)]
            base += ["--tls-cert-file", self.tls.server_cert, "--tls-key-file", self.tls.server_key]
            base += ["--tls-ca-cert-file", self.tls.ca, "--tls-auth-clients", "yes"]
        if self.password is not None:
            base += ["--requirepass", self.password]
        return base + self.options

    def client(self, **options: typing.Any) -> redis.Redis:
        """Open a synchronous client for checks and set-up, with the client certificate."""
        if self.tls is not None:
            options.setdefault("ssl", True)
            options.setdefault("ssl_ca_certs", self.tls.ca)
            options.setdefault("ssl_certfile", self.tls.client_cert)
            options.setdefault("ssl_keyfile", self.tls.client_key)
        return redis.Redis(host=HOST, port=self.port, password=self.password, socket_timeout=2.0, **options)

    def start(self) -> None:
        """Start the process and wait until it replies to PING."""
        assert self.port not in RESERVED_PORTS
        self.process = subprocess.Popen(self.command_line(), stdin=subprocess.DEVNULL, cwd=self.folder)
        deadline = time.monotonic() + START_TIMEOUT
        with self.client() as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server on port {self.port} exited: {self.log_tail()}")
                try:
                    client.ping()
                    return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"redis-server on port {self.port} did not reply to PING: {self.log_tail()}")
                    time.sleep(0.05)

    def _signal(self, signum: int) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signum)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        """Stop the process with SIGTERM, then SIGKILL after 10 s."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """Kill the process with SIGKILL, as a crash would end it."""
        self._signal(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


class RedisCluster:
    """A Redis Cluster of ``RedisServer`` nodes that share one password and TLS setup."""

    def __init__(self, nodes: list[RedisServer], cli: str) -> None:
        self.nodes = nodes
        self.cli = cli
        # Number of primaries that own slots; set by create().
        self.primary_count = 0

    @property
    def seeds(self) -> str:
        """The ``host:port,host:port`` list of every node, for a cluster URL."""
        return ",".join(f"{HOST}:{node.port}" for node in self.nodes)

    def cli_args(self) -> list[str]:
        tls = self.nodes[0].tls
        args = [self.cli]
        if tls is not None:
            args += ["--tls", "--cacert", tls.ca, "--cert", tls.client_cert, "--key", tls.client_key]
        return args

    def create(self, replicas: int = 1) -> None:
        """Join the nodes into a cluster and wait until every node reports it healthy."""
        addresses = [f"{HOST}:{node.port}" for node in self.nodes]
        command = self.cli_args() + ["--cluster", "create", *addresses]
        command += ["--cluster-replicas", str(replicas), "--cluster-yes"]
        # redis-cli reads the password from REDISCLI_AUTH, which keeps it off the command line.
        environment = {**os.environ, "REDISCLI_AUTH": self.nodes[0].password or ""}
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env=environment
        )
        if result.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{result.stdout}\n{result.stderr}")
        self.primary_count = len(self.nodes) // (replicas + 1)
        self.wait_until_ok()

    def _node_ok(self, node: RedisServer, running_ports: set[int]) -> bool:
        with node.client() as client:
            info = client.execute_command("CLUSTER", "INFO").decode()
            nodes = client.execute_command("CLUSTER", "NODES").decode()
        fields = dict(line.split(":", 1) for line in info.split() if ":" in line)
        if fields.get("cluster_state") != "ok":
            return False
        # CLUSTER NODES line: id ip:port@bus flags primary ping pong epoch link-state slots...
        seen = set()
        for line in nodes.splitlines():
            parts = line.split()
            port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
            flags = set(parts[2].split(","))
            if port in running_ports:
                if flags & {"fail", "fail?", "handshake", "noaddr"} or parts[7] != "connected":
                    return False
                seen.add(port)
        return seen == running_ports

    def wait_until_ok(self, timeout: float = CLUSTER_TIMEOUT) -> None:
        """Wait until every running node reports cluster_state:ok and the other running nodes connected.

        It also waits until ``primary_count`` running nodes have the primary
        role, so after a kill it returns only once a replica has taken over,
        and after a restart only once the old primary has become a replica.
        """
        deadline = time.monotonic() + timeout
        while True:
            running = [node for node in self.nodes if node.process is not None]
            running_ports = {node.port for node in running}
            try:
                if all(self._node_ok(node, running_ports) for node in running) and (
                    len(self.primaries()) == self.primary_count
                ):
                    return
            except (redis.ConnectionError, redis.TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster not healthy after {timeout} s: {running[0].log_tail()}")
            time.sleep(0.1)

    def primaries(self) -> list[RedisServer]:
        """Return the running nodes whose role is primary now, in the order of ``nodes``."""
        found = []
        for node in self.nodes:
            if node.process is None:
                continue
            with node.client() as client:
                role = client.execute_command("ROLE")[0]
            if role in (b"master", "master"):
                found.append(node)
        return found

    def wait_for_replication(self, timeout: float = CLUSTER_TIMEOUT) -> None:
        """Wait until every replica is online and has every write its primary had on entry.

        Call it before killing a primary, so that the promoted replica holds
        the data the test wrote.
        """
        targets = {}
        for node in self.primaries():
            with node.client() as client:
                targets[node.port] = client.info("replication")["master_repl_offset"]
        deadline = time.monotonic() + timeout
        for node in self.primaries():
            with node.client() as client:
                while True:
                    info = client.info("replication")
                    replicas = [value for name, value in info.items() if name.startswith("slave") and name[5:].isdigit()]
                    if replicas and all(
                        replica["state"] == "online" and replica["offset"] >= targets[node.port] for replica in replicas
                    ):
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"replicas of port {node.port} did not catch up within {timeout} s")
                    time.sleep(0.05)

    def kill_primary(self, index: int = 0) -> RedisServer:
        """Kill one primary with SIGKILL by its PID and return it, for fail-over tests.

        The cluster promotes that primary's replica after cluster-node-timeout
        (1 s here), which ``wait_until_ok()`` waits for. Call ``restart()`` on
        the returned node to bring it back as a replica, then ``wait_until_ok()``
        again, so that later tests find the cluster whole.
        """
        node = self.primaries()[index]
        node.kill()
        return node

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _cluster_options(bus_port: int) -> list[str]:
    return [
        "--cluster-enabled", "yes",
        "--cluster-config-file", "nodes.conf",
        "--cluster-port", str(bus_port),
        "--cluster-node-timeout", "1000",
        "--masterauth", PASSWORD,
        "--tls-cluster", "yes",
        "--tls-replication", "yes",
        # Replicas start syncing at once instead of after the default 5 s delay.
        "--repl-diskless-sync-delay", "0",
    ]


@pytest.fixture(scope="session")
def redis_server_binary() -> str:
    return find_binary("redis-server")


@pytest.fixture(scope="session")
def redis_tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("redis-tls"), HOST)


@pytest.fixture(scope="session")
def redis_plain(
    redis_server_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> typing.Iterator[RedisServer]:
    """A plain-text server: the default user has PASSWORD, and ACL_USER has ACL_PASSWORD."""
    acl = ["--user", ACL_USER, "on", f">{ACL_PASSWORD}", "~*", "&*", "+@all"]
    server = RedisServer(redis_server_binary, tmp_path_factory.mktemp("redis-plain"), free_port(), acl)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_tls(
    redis_server_binary: str, redis_tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> typing.Iterator[RedisServer]:
    """A TLS-only server that requires a client certificate signed by the test CA."""
    folder = tmp_path_factory.mktemp("redis-tls-server")
    server = RedisServer(redis_server_binary, folder, free_port(), [], tls=redis_tls_files)
    server.start()
    yield server
    server.stop()


def start_tls_cluster(binary: str, tls: TlsFiles, root: pathlib.Path) -> RedisCluster:
    """Start six TLS nodes in ``root`` and join them as three primaries with one replica each.

    The caller stops the cluster with ``RedisCluster.stop()``.
    """
    cli = find_binary("redis-cli")
    nodes = [
        RedisServer(binary, root / f"node{i}", free_port(), _cluster_options(free_port()), tls=tls)
        for i in range(6)
    ]
    cluster = RedisCluster(nodes, cli)
    try:
        for node in nodes:
            node.start()
        cluster.create(replicas=1)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def redis_cluster_tls(
    redis_server_binary: str, redis_tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> typing.Iterator[RedisCluster]:
    """A TLS Redis Cluster shared by the session: three primaries, one replica each."""
    cluster = start_tls_cluster(redis_server_binary, redis_tls_files, tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_server_factory(
    redis_server_binary: str, tmp_path: pathlib.Path
) -> typing.Iterator[typing.Callable[..., RedisServer]]:
    """Start throwaway plain-text servers that the test may stop; all stop at its end."""
    started: list[RedisServer] = []

    def start(**options: typing.Any) -> RedisServer:
        folder = tmp_path / f"redis-{len(started)}"
        server = RedisServer(redis_server_binary, folder, free_port(), [], **options)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()
