"""HTTPS served directly by `frontauth serve --tls-cert --tls-key`, and the http public URL rule."""

from __future__ import annotations

import ssl
import typing

import aiohttp
import pytest

from frontauth import config
from tests.live_client import LiveClient, start_https_frontauth
from tests.oauth_flow import authorize_params, new_pkce, register
from tests.processes import ServerProcess, free_port, run_frontauth
from tests.tls_files import TlsFiles, make_tls_files

HSTS = "max-age=31536000; includeSubDomains"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("https"), "127.0.0.1")


@pytest.fixture
def https_server(tmp_path: typing.Any, tls_files: TlsFiles) -> typing.Iterator[ServerProcess]:
    """`frontauth serve` over TLS on a free loopback port, with the test CA's server certificate."""
    server = start_https_frontauth(str(tmp_path), tls_files.server_cert, tls_files.server_key, tls_files.ca)
    yield server
    server.stop()


def assert_security_headers(headers: typing.Mapping[str, str]) -> None:
    assert headers["Strict-Transport-Security"] == HSTS
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


async def test_metadata_over_tls_names_https_issuer(https_server: ServerProcess, tls_files: TlsFiles) -> None:
    """Without public_url, serving TLS makes the issuer https://host:port, and every URL in metadata follows."""
    base = f"https://127.0.0.1:{https_server.port}"
    http = LiveClient(base, ca_file=tls_files.ca)
    try:
        response = await http.get("/.well-known/oauth-authorization-server")
        assert response.status == 200
        metadata = await response.json()
        assert_security_headers(response.headers)
        jwks = await http.get("/.well-known/jwks.json")
        assert jwks.status == 200
        assert (await jwks.json())["keys"]
    finally:
        await http.close()
    assert metadata["issuer"] == base
    endpoints = [value for name, value in metadata.items() if name.endswith("_endpoint") or name == "jwks_uri"]
    assert endpoints
    assert all(url.startswith(base + "/") for url in endpoints)


async def test_every_response_over_tls_carries_hsts(https_server: ServerProcess, tls_files: TlsFiles) -> None:
    """Errors, pages and unknown paths carry HSTS and the other security headers too."""
    http = LiveClient(f"https://127.0.0.1:{https_server.port}", ca_file=tls_files.ca)
    try:
        token_error = await http.post("/oauth/token", data={"grant_type": "authorization_code"})
        not_found = await http.get("/no-such-path")
        page = await http.get("/oauth/authorize")
        client = await register(http)  # type: ignore[arg-type]
        _, challenge = new_pkce()
        flow = await http.get("/oauth/authorize", params=authorize_params(client, challenge), allow_redirects=False)
    finally:
        await http.close()
    assert token_error.status == 401
    assert not_found.status == 404
    assert page.status == 400
    assert flow.status == 302
    for response in (token_error, not_found, page, flow):
        assert_security_headers(response.headers)
    cookies = flow.headers.getall("Set-Cookie")
    assert cookies
    assert all("Secure" in cookie for cookie in cookies)


async def test_plain_http_to_tls_port_gets_no_answer(https_server: ServerProcess) -> None:
    """A plain-HTTP request to the TLS listener is not served."""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"http://127.0.0.1:{https_server.port}/healthz") as response:
                await response.read()


async def test_untrusted_certificate_is_rejected_by_clients(https_server: ServerProcess) -> None:
    """The listener really speaks TLS with the test certificate: a client without the CA refuses it."""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(f"https://127.0.0.1:{https_server.port}/healthz", ssl=ssl.create_default_context())


def test_http_issuer_stops_startup_outside_development(tmp_path: typing.Any) -> None:
    """In production, an http public URL on a non-loopback host ends start-up with exit code 2."""
    users = tmp_path / "users.toml"
    users.write_text("")
    env = {
        "FRONTAUTH_PROFILE": "production",
        "FRONTAUTH_SERVER_SECRET": "s" * 40,
        "JWT_SIGNING_KEY": '{"kty": "EC"}',
        "FRONTAUTH_LOGIN_USERS_FILE": str(users),
        "FRONTAUTH_PUBLIC_URL": "http://auth.example.com",
    }
    result = run_frontauth(str(tmp_path), "serve", "--port", str(free_port()), env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "frontauth: invalid setting public_url (from environment variable FRONTAUTH_PUBLIC_URL): an http public URL "
        "is refused in the production profile unless its host is loopback; use https (got 'http://auth.example.com')"
    )


@pytest.mark.parametrize(
    ("profile", "public_url"),
    [
        ("production", "http://127.0.0.1:8080"),
        ("production", "http://localhost:8080"),
        ("production", "http://[::1]:8080"),
        ("staging", "https://auth.example.com"),
        ("development", "http://auth.example.com"),
    ],
    ids=["production-loopback", "production-localhost", "production-ipv6-loopback", "staging-https", "development-http"],
)
def test_allowed_public_urls(profile: str, public_url: str) -> None:
    environ = {
        "FRONTAUTH_PROFILE": profile,
        "FRONTAUTH_PUBLIC_URL": public_url,
        "FRONTAUTH_SERVER_SECRET": "s" * 40,
        "JWT_SIGNING_KEY": "{}",
        "FRONTAUTH_LOGIN_USERS_FILE": "users.toml",
    }
    assert config.load(environ=environ).issuer == public_url


def test_tls_cert_without_key_is_rejected() -> None:
    with pytest.raises(config.ConfigError) as raised:
        config.load(environ={"FRONTAUTH_SERVER_TLS_CERT": "cert.pem"})
    assert raised.value.setting == "server.tls_key"
    assert "server.tls_cert and server.tls_key must be set together" in str(raised.value)


@pytest.mark.parametrize("broken", ["missing-key", "key-of-other-certificate"])
def test_unusable_tls_files_stop_startup(tmp_path: typing.Any, tls_files: TlsFiles, broken: str) -> None:
    """A missing or mismatched key ends start-up with the setting named, before the socket opens."""
    key = str(tmp_path / "absent.key") if broken == "missing-key" else tls_files.client_key
    result = run_frontauth(
        str(tmp_path), "serve", "--port", str(free_port()), "--tls-cert", tls_files.server_cert, "--tls-key", key
    )
    assert result.returncode == 2
    assert result.stderr.startswith("frontauth: invalid setting server.tls_key (from command line): ")
    if broken == "missing-key":
        assert f"file {key!r} not found" in result.stderr
    else:
        assert "expected PEM files of one certificate chain and its private key" in result.stderr
