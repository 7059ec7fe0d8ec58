"""The [upstream] settings and the discovery of the upstream provider's endpoints."""

from __future__ import annotations

import typing

import aiohttp
import pytest

from frontauth import config, upstream
from tests.upstream_stub import UpstreamStub, serve_stub


@pytest.fixture
def all_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Accept every mode at validation, including those start-up still rejects."""
    monkeypatch.setattr(config, "IMPLEMENTED_MODES", config.MODES)


@pytest.fixture
async def stub(aiohttp_server: typing.Any) -> UpstreamStub:
    return await serve_stub(aiohttp_server)


def test_idp_environment_names_fill_upstream(make_settings: typing.Any) -> None:
    settings = make_settings(
        IDP_PROVIDER_URL="https://idp.example",
        IDP_CLIENT_ID="frontauth",
        IDP_CLIENT_SECRET="upstream-secret",
        IDP_EXPECTED_AUDIENCE="https://rs.example/mcp",
    )

    assert settings.upstream.provider == "https://idp.example"
    assert settings.upstream.client_id == "frontauth"
    assert settings.upstream.client_secret == "upstream-secret"
    assert settings.upstream.expected_audience == "https://rs.example/mcp"
    assert settings.source_of("upstream.provider") == "environment variable IDP_PROVIDER_URL"
    assert "upstream-secret" not in repr(settings)


def test_inline_jwks_accepts_toml_table(make_settings: typing.Any) -> None:
    settings = make_settings(
        '[upstream]\nprovider = "https://idp.example"\n'
        '[upstream.jwks]\nkeys = [{kty = "EC", crv = "P-256", x = "eA", y = "eQ", kid = "k"}]\n'
    )

    assert '"kid": "k"' in settings.upstream.jwks


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            'mode = "remote"\n[upstream]\nprovider = "https://idp.example"\n',
            "invalid setting upstream.client_id: required in remote mode (IDP_CLIENT_ID)",
        ),
        (
            'mode = "transparent"\n',
            "invalid setting upstream.provider: required in transparent mode (IDP_PROVIDER_URL)",
        ),
        (
            'mode = "transparent"\n[upstream]\nprovider = "idp.example"\n',
            "invalid setting upstream.provider (from file {file}): expected an absolute http(s) URL, got 'idp.example'",
        ),
        (
            'mode = "transparent"\n[upstream]\nprovider = "https://idp.example"\njwks = "{}"\n',
            "invalid setting upstream.jwks (from file {file}): expected a JWKS with a non-empty keys array",
        ),
        (
            'mode = "transparent"\n[upstream]\nprovider = "https://idp.example"\njwks_max_backoff = 0\n',
            "invalid setting upstream.jwks_max_backoff (from file {file}): expected a positive number of seconds, got 0.0",
        ),
    ],
    ids=["remote-without-client-id", "no-provider", "provider-not-url", "empty-inline-jwks", "zero-backoff"],
)
def test_upstream_setting_errors(
    make_settings: typing.Any, tmp_path: typing.Any, all_modes: None, toml: str, message: str
) -> None:
    with pytest.raises(config.ConfigError) as raised:
        make_settings(toml)

    assert str(raised.value) == message.format(file=tmp_path / "frontauth.toml")


def test_unchecked_issuer_without_audience_warns(make_settings: typing.Any, all_modes: None) -> None:
    settings = make_settings('mode = "transparent"\n[upstream]\nprovider = "https://idp.example"\nverify_issuer = false\n')

    warnings = config.warnings_of(settings)

    assert [setting for setting, _ in warnings] == ["upstream.expected_audience"]


# --- discovery ------------------------------------------------------------------


def upstream_settings(make_settings: typing.Any, mode: str, body: str) -> config.Settings:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(config, "IMPLEMENTED_MODES", config.MODES)
        return make_settings(f'mode = "{mode}"\n[upstream]\n{body}')


async def test_discovery_reads_openid_configuration(make_settings: typing.Any, stub: UpstreamStub) -> None:
    settings = upstream_settings(make_settings, "remote", f'provider = "{stub.issuer}"\nclient_id = "fa"\n')

    async with aiohttp.ClientSession() as session:
        metadata = await upstream.discover(settings, session)

    assert metadata.authorization_endpoint == f"{stub.issuer}/authorize"
    assert metadata.token_endpoint == f"{stub.issuer}/token"
    assert metadata.jwks_uri == f"{stub.issuer}/jwks"
    assert stub.metadata_requests == 1


async def test_discovery_falls_back_to_rfc8414(make_settings: typing.Any, stub: UpstreamStub) -> None:
    stub.oidc_metadata = False
    settings = upstream_settings(make_settings, "transparent", f'provider = "{stub.issuer}"\n')

    async with aiohttp.ClientSession() as session:
        metadata = await upstream.discover(settings, session)

    assert metadata.jwks_uri == f"{stub.issuer}/jwks"
    assert stub.metadata_requests == 2


async def test_configured_endpoint_overrides_metadata(make_settings: typing.Any, stub: UpstreamStub) -> None:
    settings = upstream_settings(
        make_settings, "remote",
        f'provider = "{stub.issuer}"\nclient_id = "fa"\ntoken_endpoint = "{stub.issuer}/other-token"\n',
    )

    async with aiohttp.ClientSession() as session:
        metadata = await upstream.discover(settings, session)

    assert metadata.token_endpoint == f"{stub.issuer}/other-token"
    assert metadata.authorization_endpoint == f"{stub.issuer}/authorize"


async def test_configured_endpoints_skip_discovery(make_settings: typing.Any, stub: UpstreamStub) -> None:
    settings = upstream_settings(make_settings, "transparent", f'provider = "{stub.issuer}"\njwks_uri = "{stub.issuer}/jwks"\n')

    async with aiohttp.ClientSession() as session:
        metadata = await upstream.discover(settings, session)

    assert metadata.jwks_uri == f"{stub.issuer}/jwks"
    assert stub.metadata_requests == 0


async def test_discovery_rejects_other_issuer(make_settings: typing.Any, stub: UpstreamStub) -> None:
    stub.extra_metadata = {"issuer": "https://evil.example"}
    settings = upstream_settings(make_settings, "transparent", f'provider = "{stub.issuer}"\n')

    async with aiohttp.ClientSession() as session:
        with pytest.raises(upstream.DiscoveryError) as raised:
            await upstream.discover(settings, session)

    assert "names issuer 'https://evil.example'" in str(raised.value)


async def test_unreachable_provider_fails_connect(make_settings: typing.Any) -> None:
    from tests.processes import free_port

    settings = upstream_settings(make_settings, "transparent", f'provider = "http://127.0.0.1:{free_port()}"\n')

    with pytest.raises(upstream.DiscoveryError) as raised:
        await upstream.connect(settings)

    assert "is unreachable or has no usable metadata" in str(raised.value)
    assert "\n" not in str(raised.value)


async def test_failing_jwks_fails_connect(make_settings: typing.Any, stub: UpstreamStub) -> None:
    stub.jwks_fault = "500"
    settings = upstream_settings(make_settings, "transparent", f'provider = "{stub.issuer}"\n')

    with pytest.raises(upstream.DiscoveryError) as raised:
        await upstream.connect(settings)

    assert str(raised.value) == (
        f"the key set of upstream provider {stub.issuer} at {stub.issuer}/jwks cannot be fetched; "
        "check upstream.jwks_uri or set upstream.jwks"
    )


async def test_inline_jwks_needs_no_fetch(make_settings: typing.Any, stub: UpstreamStub) -> None:
    jwks = '{"keys": [%s]}' % __import__("json").dumps(stub.keys[0].as_dict(private=False))
    settings = upstream_settings(make_settings, "transparent", f"provider = \"{stub.issuer}\"\njwks = '{jwks}'\n")

    connected = await upstream.connect(settings)
    await connected.close()

    assert stub.metadata_requests == 0
    assert stub.jwks_requests == 0
