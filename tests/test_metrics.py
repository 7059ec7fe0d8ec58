"""Prometheus metrics: each one moves by the expected amount after a scripted scenario."""

from __future__ import annotations

import typing
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from frontauth import config
from frontauth.app import create_app
from frontauth.drivers import open_driver
from frontauth.drivers.memory import MemoryDriver
from frontauth.metrics import METRICS
from frontauth.users import add_user
from tests.oauth_flow import (
    Client,
    authorize_params,
    exchange,
    local_path,
    new_pkce,
    parse_form,
    query_of,
    refresh,
    register,
)
from tests.processes import free_port, start_frontauth
from tests.redis_servers import HOST, PASSWORD

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """Return one sample's value; a series that does not exist fails the test with its name."""
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no sample {name}{labels}"
    return samples[key]


async def scrape(http: typing.Any) -> Samples:
    response = await http.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return parse(await response.text())


@pytest.fixture
async def users_app(aiohttp_client: typing.Any, make_settings: typing.Callable[..., config.Settings], tmp_path: typing.Any) -> typing.Any:
    users = tmp_path / "users.toml"
    add_user(str(users), "alice", "alice-password-1", email="alice@example.com")
    settings = make_settings(f'[login]\nusers_file = "{users}"\n[ratelimit]\nregister_max_requests = 2\n'
        # Without the grace window, the second use of a refresh token is reuse at once.
        "[tokens]\nrefresh_grace = 0\n")
    return await aiohttp_client(create_app(settings, driver=MemoryDriver(cleanup_interval=0)))


async def code_after_failed_sign_ins(http: typing.Any, client: Client, failures: int) -> tuple[str, str]:
    """Authorize, fail the sign-in ``failures`` times, sign in, approve; return (code, verifier)."""
    verifier, challenge = new_pkce()
    response = await http.get("/oauth/authorize", params=authorize_params(client, challenge), allow_redirects=False)
    page = await http.get(local_path(response.headers["Location"]))
    form = parse_form(await page.text())
    for _ in range(failures):
        failed = await http.post(form["action"], data={**form["fields"], "username": "alice", "password": "wrong-one"})
        assert failed.status == 401
        form = parse_form(await failed.text())
    signed_in = await http.post(
        form["action"], data={**form["fields"], "username": "alice", "password": "alice-password-1"}, allow_redirects=False
    )
    consent = await http.get(local_path(signed_in.headers["Location"]))
    form = parse_form(await consent.text())
    approved = await http.post(form["action"], data={**form["fields"], "decision": "approve"}, allow_redirects=False)
    return query_of(approved.headers["Location"])["code"], verifier


async def test_scenario_moves_each_metric(users_app: typing.Any) -> None:
    """Failed sign-ins, a flow, refreshes, a reuse, a JWKS failure and a rate limit, each counted once per event."""
    http = users_app
    before = await scrape(http)
    assert value(before, "frontauth_tokens_issued_total", grant_type="authorization_code") == 0
    assert value(before, "frontauth_refresh_grants_total", result="issued") == 0
    assert value(before, "frontauth_storage_errors_total", driver="memory", operation="ping") == 0

    client = await register(http)
    code, verifier = await code_after_failed_sign_ins(http, client, failures=2)
    issued = await exchange(http, client, code, verifier)
    assert issued.status == 200
    tokens = await issued.json()
    first = await refresh(http, client, tokens["refresh_token"])
    second = await refresh(http, client, (await first.json())["refresh_token"])
    assert second.status == 200
    reuse = await refresh(http, client, tokens["refresh_token"])
    assert reuse.status == 400
    metrics = http.app[METRICS]
    metrics.declare_jwks_provider("https://idp.example.com")
    metrics.jwks_fetch_errors.labels("https://idp.example.com").inc()
    registrations = [(await http.post("/oauth/register", json={})).status for _ in range(2)]
    assert registrations == [400, 429]

    after = await scrape(http)
    assert value(after, "frontauth_auth_failures_total", endpoint="/oauth/login", reason="invalid_credentials") == 2
    assert value(after, "frontauth_auth_failures_total", endpoint="/oauth/token", reason="invalid_grant") == 1
    assert value(after, "frontauth_auth_failures_total", endpoint="/oauth/register", reason="invalid_redirect_uri") == 1
    assert value(after, "frontauth_tokens_issued_total", grant_type="authorization_code") == 1
    assert value(after, "frontauth_tokens_issued_total", grant_type="refresh_token") == 2
    assert value(after, "frontauth_refresh_grants_total", result="issued") == 2
    assert value(after, "frontauth_refresh_grants_total", result="rejected") == 1
    assert value(after, "frontauth_token_request_duration_seconds_count", grant_type="authorization_code") == 1
    assert value(after, "frontauth_token_request_duration_seconds_count", grant_type="refresh_token") == 3
    assert value(after, "frontauth_token_request_duration_seconds_bucket", grant_type="refresh_token", le="+Inf") == 3
    assert value(after, "frontauth_jwks_fetch_errors_total", provider="https://idp.example.com") == 1
    assert value(after, "frontauth_rate_limited_requests_total", endpoint="register") == 1
    assert value(after, "frontauth_storage_errors_total", driver="memory", operation="ping") == 0


async def test_process_metrics_are_exposed(http: typing.Any) -> None:
    samples = await scrape(http)
    names = {name for name, _ in samples}
    assert "process_cpu_seconds_total" in names
    assert "process_resident_memory_bytes" in names
    assert "python_info" in names
    assert "python_gc_collections_total" in names


async def test_each_app_has_its_own_registry(aiohttp_client: typing.Any, settings: config.Settings) -> None:
    """Two applications in one process count separately and do not collide on registration."""
    first = await aiohttp_client(create_app(settings, driver=MemoryDriver(cleanup_interval=0)))
    second = await aiohttp_client(create_app(settings, driver=MemoryDriver(cleanup_interval=0)))
    await first.post("/oauth/token", data={"grant_type": "password"})
    assert value(await scrape(first), "frontauth_auth_failures_total", endpoint="/oauth/token", reason="unsupported_grant_type") == 1
    assert ("frontauth_auth_failures_total", frozenset({("endpoint", "/oauth/token"), ("reason", "unsupported_grant_type")})) not in await scrape(second)


async def test_metrics_disabled_serves_no_endpoint(aiohttp_client: typing.Any, make_settings: typing.Callable[..., config.Settings]) -> None:
    settings = make_settings("[metrics]\nenabled = false\n")
    http = await aiohttp_client(create_app(settings, driver=MemoryDriver(cleanup_interval=0)))
    assert (await http.get("/metrics")).status == 404
    assert (await http.post("/oauth/token", data={})).status == 400


@pytest.mark.redis
async def test_redis_outage_counts_storage_errors(
    aiohttp_client: typing.Any, make_settings: typing.Callable[..., config.Settings], redis_server_factory: typing.Any
) -> None:
    """With Redis stopped, /readyz counts a failed ping and the token endpoint a failed rate-limit hit."""
    server = redis_server_factory()
    settings = make_settings(
        f'[storage]\nurl = "redis://:{PASSWORD}@{HOST}:{server.port}/0"\nretry_attempts = 0\nconnect_timeout = 1.0\n'
    )
    driver = await open_driver(settings.storage)
    try:
        http = await aiohttp_client(create_app(settings, driver=driver))
        assert (await http.get("/readyz")).status == 200
        server.stop()
        ready = await http.get("/readyz")
        token = await http.post("/oauth/token", data={"grant_type": "authorization_code"})
        samples = await scrape(http)
    finally:
        await driver.close()
    assert ready.status == 503
    assert token.status == 503
    assert value(samples, "frontauth_storage_errors_total", driver="redis", operation="ping") == 1
    assert value(samples, "frontauth_storage_errors_total", driver="redis", operation="hit") == 1
    assert value(samples, "frontauth_storage_errors_total", driver="redis", operation="get") == 0


def test_metrics_on_separate_port(tmp_path: typing.Any) -> None:
    """With metrics.port, /metrics moves to its own listener and leaves the main one."""
    metrics_port = free_port()
    server = start_frontauth(str(tmp_path), env={"FRONTAUTH_METRICS_PORT": str(metrics_port)})
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{server.url}/metrics", timeout=5)
    finally:
        server.stop()
    assert missing.value.code == 404
    assert "frontauth_tokens_issued_total" in text
    assert f"Prometheus metrics at /metrics on 127.0.0.1:{metrics_port}" in server.log()


def test_metrics_port_must_differ_from_server_port() -> None:
    with pytest.raises(config.ConfigError) as raised:
        config.load(environ={"FRONTAUTH_METRICS_PORT": "8080"})
    assert raised.value.setting == "metrics.port"
    assert "must differ from server.port (8080)" in str(raised.value)

