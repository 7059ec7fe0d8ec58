"""Storage faults while flows run: Redis stops and restarts, a cluster primary dies, start-up waits.

Several flows run in a loop through the in-process app while the test breaks
the storage under them. Every response is recorded: a storage outage may only
show as 503 ``temporarily_unavailable`` with ``Retry-After``, never as another
5xx, and flows must succeed again once the storage is back, without a restart
of frontauth. Rate limiting is off, because every request comes from one
address.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import secrets
import time
import typing

import aiohttp
import attrs
import pytest

from frontauth import keys
from tests.oauth_flow import REDIRECT_URI, Client, authorize_params, local_path, new_pkce, parse_form, query_of
from tests.processes import free_port as free_http_port
from tests.processes import ServerProcess, run_frontauth, start_frontauth
from tests.redis_app import cluster_target, plain_target, start_app, unique_prefix
from tests.redis_servers import PASSWORD, RedisCluster, RedisServer, free_port, start_tls_cluster
from tests.tls_files import TlsFiles

CLIENT = Client("fault-test-client")
APP_TOML = f"""
[[clients]]
client_id = "{CLIENT.client_id}"
redirect_uris = ["{REDIRECT_URI}"]

[ratelimit]
enabled = false
"""
STORAGE_503 = {
    "error": "temporarily_unavailable",
    "error_description": "storage is temporarily unavailable; retry later",
}
FLOW_WORKERS = 4
# With a signing key and a server secret given, start-up writes no development
# files and logs no warning about them.
INSTANCE_ENV = {
    "JWT_SIGNING_KEY": json.dumps(keys.generate("ES256", "faults")),
    "FRONTAUTH_SERVER_SECRET": secrets.token_urlsafe(32),
}
WAITING_LOG = "redis storage not reachable yet (connection failed (ConnectionError)); retrying for up to"
# Seconds within which a flow must succeed again once the storage is back.
RECOVERY_DEADLINE = 5.0


@attrs.frozen
class Recorded:
    step: str
    status: int
    content_type: str
    retry_after: str | None
    body: str


class FlowRunner:
    """Runs complete flows in a loop on several workers and records every response.

    A flow is authorize, sign-in, consent, code exchange and one refresh. A
    step that fails ends the flow, and the worker starts a new one. The
    refresh token of each completed flow is kept unused in ``refresh_tokens``.
    """

    def __init__(self, http: typing.Any) -> None:
        self.http = http
        self.base_url = str(http.make_url("/"))
        self.responses: list[Recorded] = []
        self.refresh_tokens: list[str] = []
        self.completed_at: list[float] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _record(self, step: str, response: typing.Any) -> typing.Any:
        body = await response.text()
        self.responses.append(
            Recorded(step, response.status, response.content_type, response.headers.get("Retry-After"), body)
        )
        return body

    async def _submit_form(self, browser: aiohttp.ClientSession, step: str, location: str) -> str | None:
        """GET the page at ``location`` and POST its form back; return the next Location or None."""
        page = await browser.get(local_path(location), allow_redirects=False)
        text = await self._record(step + " page", page)
        if page.status != 200:
            return None
        form = parse_form(text)
        fields = dict(form["fields"])
        fields.update(username="alice@example.com", password="", decision="approve")
        submitted = await browser.post(form["action"], data=fields, allow_redirects=False)
        await self._record(step + " form", submitted)
        return submitted.headers.get("Location") if submitted.status in (302, 303) else None

    async def flow(self, browser: aiohttp.ClientSession) -> bool:
        """Run one flow in ``browser``, emptied of cookies first; return True when it completed."""
        browser.cookie_jar.clear()
        verifier, challenge = new_pkce()
        started = await browser.get(
            "/oauth/authorize", params=authorize_params(CLIENT, challenge), allow_redirects=False
        )
        await self._record("authorize", started)
        location = started.headers.get("Location") if started.status == 302 else None

        # Sign-in, then consent unless the user already approved this client.
        for step in ("/oauth/login", "/oauth/consent"):
            if location is not None and local_path(location).startswith(step):
                location = await self._submit_form(browser, step, location)
        if location is None or not location.startswith(REDIRECT_URI):
            return False

        form = {
            "grant_type": "authorization_code",
            "code": query_of(location).get("code", ""),
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            "client_id": CLIENT.client_id,
        }
        exchanged = await browser.post("/oauth/token", data=form)
        body = await self._record("code exchange", exchanged)
        if exchanged.status != 200:
            return False

        refreshed = await browser.post("/oauth/token", data=refresh_form(json.loads(body)["refresh_token"]))
        body = await self._record("refresh", refreshed)
        if refreshed.status != 200:
            return False
        self.refresh_tokens.append(json.loads(body)["refresh_token"])
        self.completed_at.append(time.monotonic())
        return True

    async def _work(self) -> None:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(base_url=self.base_url, cookie_jar=jar) as browser:
            while not self._stop.is_set():
                if not await self.flow(browser):
                    await asyncio.sleep(0.05)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(FLOW_WORKERS)]

    async def stop(self) -> None:
        """Let every worker finish its current flow, then return."""
        self._stop.set()
        await asyncio.gather(*self._tasks)
        self._tasks = []

    async def wait_for_completed(self, count: int, after: float, timeout: float) -> float:
        """Wait until ``count`` flows completed after ``after`` (monotonic); return when the first did."""
        deadline = time.monotonic() + timeout
        while True:
            done = [moment for moment in self.completed_at if moment > after]
            if len(done) >= count:
                return done[0]
            recent = [(r.step, r.status, r.body[:80]) for r in self.responses[-8:]]
            assert time.monotonic() < deadline, f"fewer than {count} flows completed in {timeout} s; last: {recent}"
            await asyncio.sleep(0.05)

    def check_errors(self) -> None:
        """Every 5xx is a storage 503 with Retry-After and the error in the endpoint's format."""
        for response in self.responses:
            if response.status < 500:
                continue
            assert response.status == 503, f"{response.step}: {response.status} {response.body[:300]}"
            assert response.retry_after == "2", response.step
            if response.content_type == "application/json":
                assert json.loads(response.body) == STORAGE_503, response.step
            else:
                assert response.content_type == "text/html", response.step
                assert "<code>temporarily_unavailable</code>" in response.body, response.step


RunnerFactory = typing.Callable[..., typing.Awaitable[FlowRunner]]


def refresh_form(refresh_token: str) -> dict[str, str]:
    return {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLIENT.client_id}


@pytest.fixture
async def runner_factory(aiohttp_client, make_settings) -> typing.AsyncIterator[RunnerFactory]:
    """Start apps with a flow runner each; stop the runners' workers at the end."""
    runners: list[FlowRunner] = []

    async def make(target: typing.Any, **storage_options: typing.Any) -> FlowRunner:
        http = await start_app(aiohttp_client, make_settings, target, unique_prefix(), APP_TOML, **storage_options)
        runner = FlowRunner(http)
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        await runner.stop()


async def test_redis_restart_during_flows(redis_server_factory, runner_factory) -> None:
    server: RedisServer = redis_server_factory()
    runner = await runner_factory(plain_target(server), connect_timeout=1.0, command_timeout=1.0)
    http = runner.http
    runner.start()
    await runner.wait_for_completed(3, after=0, timeout=10)

    await asyncio.to_thread(server.stop)
    stopped_at = time.monotonic()
    await asyncio.sleep(1.0)
    ready = await http.get("/readyz")
    assert ready.status == 503
    assert ready.headers["Retry-After"] == "2"
    assert (await ready.json())["status"] == "unavailable"
    assert not [moment for moment in runner.completed_at if moment > stopped_at + 0.5]

    await asyncio.to_thread(server.start)
    restarted_at = time.monotonic()
    first_success = await runner.wait_for_completed(3, after=restarted_at, timeout=RECOVERY_DEADLINE)
    await runner.stop()

    assert first_success - restarted_at < RECOVERY_DEADLINE
    assert (await http.get("/readyz")).status == 200
    outage = [r for r in runner.responses if r.status == 503]
    assert outage, "no request reached the app while Redis was down"
    runner.check_errors()


async def test_cluster_primary_killed_during_flows(
    redis_server_binary: str, redis_tls_files: TlsFiles, tmp_path: pathlib.Path, runner_factory
) -> None:
    cluster = start_tls_cluster(redis_server_binary, redis_tls_files, tmp_path / "cluster")
    try:
        runner = await runner_factory(
            cluster_target(cluster, redis_tls_files), connect_timeout=1.0, command_timeout=1.0
        )
        # The replicas finish their first sync before the load starts, which
        # is faster than checking their offsets while the flows hold the GIL.
        await asyncio.to_thread(cluster.wait_for_replication)
        runner.start()
        await runner.wait_for_completed(6, after=0, timeout=15)

        # NOTE: Redis replicates asynchronously, and frontauth does not wait
        # for replicas (WAIT). A write acknowledged just before a crash can
        # therefore be missing on the promoted replica. The event loop stays
        # blocked from the snapshot to the kill, so every token in the
        # snapshot was replicated before the primary died.
        issued_before_kill = list(runner.refresh_tokens)
        cluster.wait_for_replication()
        cluster.kill_primary(0)

        await asyncio.to_thread(wait_for_promotion, cluster)
        failed_over_at = time.monotonic()
        first_success = await runner.wait_for_completed(3, after=failed_over_at, timeout=RECOVERY_DEADLINE)
        await runner.stop()
        assert first_success - failed_over_at < RECOVERY_DEADLINE
        runner.check_errors()

        assert len(issued_before_kill) >= 6
        for token in issued_before_kill:
            response = await runner.http.post("/oauth/token", data=refresh_form(token))
            assert response.status == 200, await response.text()

        # With every node down, requests still get the storage 503.
        await asyncio.to_thread(cluster.stop)
        ready = await runner.http.get("/readyz")
        assert ready.status == 503
        refused = await runner.http.post("/oauth/token", data=refresh_form(runner.refresh_tokens[-1]))
        assert refused.status == 503, await refused.text()
        assert refused.headers["Retry-After"] == "2"
        assert await refused.json() == STORAGE_503
    finally:
        cluster.stop()


def wait_for_promotion(cluster: RedisCluster, timeout: float = 30.0) -> None:
    """Wait until a replica has taken the place of the killed primary.

    ``RedisCluster.wait_until_ok`` also waits for every node to report the
    cluster healthy again, which takes seconds longer. The flows must recover
    from that state by themselves.
    """
    deadline = time.monotonic() + timeout
    while len(cluster.primaries()) < cluster.primary_count:
        assert time.monotonic() < deadline, f"no replica was promoted within {timeout} s"
        time.sleep(0.05)


def storage_config(folder: pathlib.Path, url: str, **storage: typing.Any) -> str:
    """Write a configuration with this storage URL and settings; return its path."""
    lines = [f"{name} = {json.dumps(value)}" for name, value in {"url": url, **storage}.items()]
    path = folder / "frontauth.toml"
    path.write_text("[storage]\n" + "\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize(
    ("url", "storage", "exit_code", "line"),
    [
        pytest.param(
            "redis://127.0.0.1:{port}/0", {}, 1,
            "frontauth: storage at storage.url cannot be used: connection failed (ConnectionError)",
            id="redis-unreachable",
        ),
        pytest.param(
            "redis+cluster://127.0.0.1:{port}/", {}, 1,
            "frontauth: storage at storage.url cannot be used: "
            "no cluster node reachable (RedisClusterUnreachableError)",
            id="cluster-unreachable",
        ),
        pytest.param(
            "rediss://127.0.0.1:{port}/0", {"tls_ca": "missing-ca.pem"}, 2,
            "frontauth: invalid setting storage.tls_ca: file 'missing-ca.pem' not found",
            id="tls-file-missing",
        ),
        pytest.param(
            "redis://127.0.0.1:99999/0", {}, 2,
            "frontauth: invalid setting storage.url: invalid port; expected a number between 1 and 65535",
            id="invalid-port",
        ),
    ],
)
def test_startup_storage_failure_one_line(
    tmp_path: pathlib.Path, url: str, storage: dict[str, typing.Any], exit_code: int, line: str
) -> None:
    config_file = storage_config(tmp_path, url.format(port=free_port()), retry_attempts=0, **storage)
    command = ["serve", "--config", config_file, "--port", str(free_http_port())]
    result = run_frontauth(str(tmp_path), *command, env=INSTANCE_ENV, timeout=20)
    assert result.returncode == exit_code
    assert result.stdout == ""
    assert result.stderr.splitlines() == [line]


async def test_startup_waits_for_redis(tmp_path: pathlib.Path, redis_server_binary: str) -> None:
    redis_port = free_port()
    server = RedisServer(redis_server_binary, tmp_path / "redis", redis_port, [])
    config_file = storage_config(tmp_path, f"redis://127.0.0.1:{redis_port}/0", startup_wait=15)
    env = {**INSTANCE_ENV, "REDIS_PASSWORD": PASSWORD}
    http_port = free_http_port()
    log_file = tmp_path / f"frontauth-{http_port}.log"
    starting = asyncio.create_task(
        asyncio.to_thread(start_frontauth, str(tmp_path), config_file, env=env, port=http_port)
    )
    try:
        deadline = time.monotonic() + 10
        while not (log_file.exists() and WAITING_LOG in log_file.read_text()):
            assert time.monotonic() < deadline, "frontauth did not log that it waits for Redis"
            await asyncio.sleep(0.1)
        assert not starting.done()
        await asyncio.to_thread(server.start)
        frontauth = await starting
        async with aiohttp.ClientSession() as http:
            ready = await http.get(f"{frontauth.url}/readyz")
            assert ready.status == 200
    finally:
        # start_frontauth stops the process itself when it does not come up.
        started = (await asyncio.gather(starting, return_exceptions=True))[0]
        if isinstance(started, ServerProcess):
            started.stop()
        server.stop()
