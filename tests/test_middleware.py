"""The request middleware: the order of its steps, seen through real HTTP on loopback.

frontauth.middleware runs every request through content-coding rejection,
rate limiting, the handler, error rendering, metrics and security headers.
These tests pin the order that matters to a client: what is counted, what is
rendered as an OAuth error, and which responses carry the security headers.
"""

from __future__ import annotations

import typing

import pytest

from frontauth import config
from frontauth.app import create_app
from frontauth.drivers.memory import MemoryDriver
from frontauth.storage import StorageUnavailable

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@pytest.fixture
async def app_client(aiohttp_client: typing.Any, make_settings: typing.Callable[..., config.Settings]) -> typing.Any:
    async def start(toml: str = "", driver: typing.Any = None) -> typing.Any:
        settings = make_settings(toml)
        return await aiohttp_client(create_app(settings, driver=driver or MemoryDriver(cleanup_interval=0)))

    return start


def assert_security_headers(headers: typing.Mapping[str, str]) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name
    assert "default-src 'none'" in headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/oauth/token", 400),  # an OAuthError rendered as JSON
        ("GET", "/oauth/unknown", 404),  # the router's 404 on a protocol path, rendered as JSON
        ("GET", "/unknown", 404),  # the router's 404 elsewhere, which aiohttp sends itself
        ("GET", "/healthz", 200),
        ("GET", "/static/frontauth.css", 200),
    ],
)
async def test_security_headers_on_every_response(app_client, method, path, status):
    http = await app_client()
    response = await http.request(method, path)
    assert response.status == status
    assert_security_headers(response.headers)


async def test_encoded_body_rejected_before_counting(app_client):
    """A body with a Content-Encoding gets invalid_request and does not use up the rate limit."""
    http = await app_client("[ratelimit]\ntoken_max_requests = 1\n")
    for _ in range(3):
        response = await http.post(
            "/oauth/token", data=b"grant_type=refresh_token",
            headers={"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"},
        )
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_request"
        assert response.headers["Accept-Encoding"] == "identity"
        assert_security_headers(response.headers)
    counted = await http.post("/oauth/token", data={"grant_type": "refresh_token"})
    assert counted.status == 401
    limited = await http.post("/oauth/token", data={"grant_type": "refresh_token"})
    assert limited.status == 429
    assert_security_headers(limited.headers)


class FailingDriver(MemoryDriver):
    """A memory driver whose rate-limit count fails, as a Redis that went away would."""

    def __init__(self, exc: Exception) -> None:
        super().__init__(cleanup_interval=0)
        self.exc = exc

    async def hit(self, *args: typing.Any, **kwargs: typing.Any) -> typing.Any:
        raise self.exc


async def test_counting_outage_is_503(app_client):
    http = await app_client(driver=FailingDriver(StorageUnavailable("memory", "hit", "test outage")))
    response = await http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": "x"})
    assert response.status == 503
    assert response.headers["Retry-After"] == "2"
    assert (await response.json())["error"] == "temporarily_unavailable"
    assert_security_headers(response.headers)


async def test_unexpected_exception_hides_details(app_client, caplog):
    http = await app_client(driver=FailingDriver(RuntimeError("secret-bearing detail")))
    response = await http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": "x"})
    assert response.status == 500
    body = await response.json()
    assert body == {"error": "server_error", "error_description": "internal server error"}
    assert "secret-bearing detail" not in await response.text()
    assert_security_headers(response.headers)
    # The traceback goes to the log, for the operator.
    assert any(record.exc_info and "unexpected error on POST /oauth/token" in record.getMessage() for record in caplog.records)


async def test_metrics_count_rendered_errors(app_client):
    """A refresh grant rejected with an OAuthError is counted as rejected, because metrics see the rendered status."""
    http = await app_client()
    response = await http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": "x"})
    assert response.status == 401
    exposition = await (await http.get("/metrics")).text()
    assert 'frontauth_token_request_duration_seconds_count{grant_type="refresh_token"} 1.0' in exposition
    assert 'frontauth_refresh_grants_total{result="rejected"} 1.0' in exposition
    assert 'frontauth_auth_failures_total{endpoint="/oauth/token",reason="invalid_client"} 1.0' in exposition
