"""Remote mode against the stub provider: upstream redirect, callback, errors, vault and refresh.

The test plays the browser: it follows frontauth's redirect to the provider by
reading its parameters, lets the stub issue a code bound to them, and calls
/oauth/callback with that code as the provider's redirect would.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import typing
import urllib.parse

import pytest

from frontauth.app import create_app
from frontauth.appkeys import SERVICES
from frontauth.drivers.memory import MemoryDriver
from frontauth.tokens import digest
from frontauth.vault import RefreshFailed
from tests.upstream_stub import UpstreamStub, serve_stub

CLIENT_ID = "mcp-client"
REDIRECT_URI = "http://127.0.0.1:9999/callback"
VERIFIER = "v" * 64
ISSUER = "http://127.0.0.1:8080"


def challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@pytest.fixture
async def stub(aiohttp_server: typing.Any) -> UpstreamStub:
    return await serve_stub(aiohttp_server)


@pytest.fixture
def make_client(aiohttp_client: typing.Any, make_settings: typing.Any, stub: UpstreamStub) -> typing.Any:
    async def make(extra: str = "", consent: bool = False) -> typing.Any:
        settings = make_settings(
            f'mode = "remote"\n'
            f"[consent]\nenabled = {'true' if consent else 'false'}\n"
            f'[[clients]]\nclient_id = "{CLIENT_ID}"\nredirect_uris = ["{REDIRECT_URI}"]\n'
            f'[upstream]\nprovider = "{stub.issuer}"\nclient_id = "{stub.client_id}"\n{extra}'
        )
        return await aiohttp_client(create_app(settings, driver=MemoryDriver(cleanup_interval=0)))

    return make


def query(location: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


async def start(client: typing.Any) -> dict[str, str]:
    """Send the MCP client's authorization request; return the parameters frontauth sent upstream."""
    response = await client.get("/oauth/authorize", params={
        "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "response_type": "code", "state": "client-state",
        "code_challenge": challenge(VERIFIER), "code_challenge_method": "S256", "scope": "mcp",
    }, allow_redirects=False)
    assert response.status == 302
    return query(response.headers["Location"])


async def callback(client: typing.Any, **params: str) -> typing.Any:
    return await client.get("/oauth/callback", params=params, allow_redirects=False)


async def sign_in(client: typing.Any, stub: UpstreamStub) -> typing.Any:
    upstream_params = await start(client)
    code = stub.issue_code(upstream_params)
    return await callback(client, code=code, state=upstream_params["state"], iss=stub.issuer)


async def test_authorize_redirects_upstream_with_pkce(make_client: typing.Any, stub: UpstreamStub) -> None:
    client = await make_client()

    response = await client.get("/oauth/authorize", params={
        "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "response_type": "code", "state": "s",
        "code_challenge": challenge(VERIFIER), "code_challenge_method": "S256",
    }, allow_redirects=False)

    location = response.headers["Location"]
    params = query(location)
    assert location.startswith(f"{stub.issuer}/authorize?")
    assert params["client_id"] == stub.client_id
    assert params["redirect_uri"] == f"{ISSUER}/oauth/callback"
    assert params["scope"] == "openid profile email"
    assert params["code_challenge_method"] == "S256"
    assert params["code_challenge"] != challenge(VERIFIER)  # frontauth's own PKCE, not the client's
    assert params["state"] != "s"
    assert len(params["nonce"]) >= 20


async def test_authorize_errors_unchanged_in_remote_mode(make_client: typing.Any) -> None:
    client = await make_client()

    response = await client.get("/oauth/authorize", params={
        "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "response_type": "code", "state": "s",
        "code_challenge": challenge(VERIFIER), "code_challenge_method": "plain",
    }, allow_redirects=False)

    assert response.status == 302
    assert query(response.headers["Location"])["error"] == "invalid_request"


async def test_callback_issues_code_for_upstream_subject(make_client: typing.Any, stub: UpstreamStub) -> None:
    client = await make_client()

    response = await sign_in(client, stub)

    assert response.status == 302
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    params = query(location)
    assert params["state"] == "client-state"
    assert params["iss"] == ISSUER
    token = await client.post("/oauth/token", data={
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT_URI,
        "client_id": CLIENT_ID, "code_verifier": VERIFIER,
    })
    assert token.status == 200
    userinfo = await client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {(await token.json())['access_token']}"})
    assert (await userinfo.json())["sub"] == "alice"


async def test_callback_shows_consent_when_enabled(make_client: typing.Any, stub: UpstreamStub) -> None:
    client = await make_client(consent=True)

    response = await sign_in(client, stub)

    assert response.status == 303
    assert response.headers["Location"].startswith(f"{ISSUER}/oauth/consent?pending=")


@pytest.mark.parametrize(
    ("upstream_error", "expected"),
    [("access_denied", "access_denied"), ("login_required", "access_denied"),
     ("temporarily_unavailable", "temporarily_unavailable"), ("invalid_scope", "server_error")],
)
async def test_upstream_error_reaches_client(
    make_client: typing.Any, upstream_error: str, expected: str
) -> None:
    client = await make_client()
    upstream_params = await start(client)

    response = await callback(client, error=upstream_error, state=upstream_params["state"])

    assert response.status == 302
    params = query(response.headers["Location"])
    assert params["error"] == expected
    assert params["state"] == "client-state"
    assert params["iss"] == ISSUER


@pytest.mark.parametrize(
    ("fault", "overrides", "expected", "description"),
    [
        ("500", {}, "server_error", "the identity provider did not complete the sign-in"),
        ("invalid_grant", {}, "server_error", "the identity provider did not complete the sign-in"),
        ("no_id_token_no_userinfo", {}, "server_error", "the identity provider returned no ID token"),
        (None, {"nonce": "other"}, "server_error", "the identity provider returned an invalid ID token"),
        (None, {"aud": "someone-else"}, "server_error", "the identity provider returned an invalid ID token"),
        (None, {"iss": "https://evil.example"}, "server_error", "the identity provider returned an invalid ID token"),
        (None, {"exp": 1000}, "server_error", "the identity provider returned an invalid ID token"),
    ],
    ids=["token-500", "invalid-grant", "no-id-token", "wrong-nonce", "wrong-aud", "wrong-iss", "expired"],
)
async def test_failed_exchange_reaches_client(
    make_client: typing.Any, stub: UpstreamStub, fault: str | None, overrides: dict[str, typing.Any],
    expected: str, description: str,
) -> None:
    client = await make_client()
    stub.token_fault = "no_id_token" if fault == "no_id_token_no_userinfo" else fault
    stub.userinfo_fault = fault == "no_id_token_no_userinfo"
    stub.id_token_overrides = overrides

    response = await sign_in(client, stub)

    assert response.status == 302
    params = query(response.headers["Location"])
    assert params["error"] == expected
    assert params["error_description"] == description


async def serve_body(aiohttp_server: typing.Any, method: str, path: str, body: bytes) -> int:
    """Start an upstream endpoint on loopback that sends ``body`` as JSON to every request; return its port."""
    from aiohttp import web

    async def send_body(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route(method, path, send_body)
    server = await aiohttp_server(app)
    return int(server.port)


@pytest.mark.parametrize(
    "body",
    [b"[" * 30000 + b"]" * 30000, b'{"access_token": "' + b"a" * (1024 * 1024) + b'"}'],
    ids=["deeply-nested", "over-size-limit"],
)
async def test_unusable_token_response_reaches_client(
    make_client: typing.Any, stub: UpstreamStub, aiohttp_server: typing.Any, body: bytes
) -> None:
    """A token response the JSON parser cannot take becomes server_error at the client, never a 500."""
    port = await serve_body(aiohttp_server, "POST", "/token", body)
    client = await make_client(f'token_endpoint = "http://127.0.0.1:{port}/token"\n')

    response = await sign_in(client, stub)

    assert response.status == 302
    params = query(response.headers["Location"])
    assert params["error"] == "server_error"
    assert params["error_description"] == "the identity provider did not complete the sign-in"


async def test_missing_id_token_uses_userinfo_subject(make_client: typing.Any, stub: UpstreamStub) -> None:
    client = await make_client()
    stub.token_fault = "no_id_token"

    response = await sign_in(client, stub)

    assert "code" in query(response.headers["Location"])
    session = await client.app[SERVICES].stores.get_session(session_id_of(client))
    assert session.subject == "alice"


async def test_unreachable_token_endpoint_is_temporarily_unavailable(make_client: typing.Any, stub: UpstreamStub) -> None:
    from tests.processes import free_port

    client = await make_client(f'token_endpoint = "http://127.0.0.1:{free_port()}/token"\n')

    response = await sign_in(client, stub)

    assert query(response.headers["Location"])["error"] == "temporarily_unavailable"


async def test_mixed_up_issuer_rejected(make_client: typing.Any, stub: UpstreamStub) -> None:
    client = await make_client()
    upstream_params = await start(client)
    code = stub.issue_code(upstream_params)

    response = await callback(client, code=code, state=upstream_params["state"], iss="https://evil.example")

    assert query(response.headers["Location"])["error"] == "server_error"


async def test_unknown_state_gets_error_page(make_client: typing.Any) -> None:
    client = await make_client()

    response = await callback(client, code="c", state="never-issued")

    assert response.status == 400
    assert "Location" not in response.headers


async def test_callback_state_single_use(make_client: typing.Any, stub: UpstreamStub) -> None:
    client = await make_client()
    upstream_params = await start(client)
    code = stub.issue_code(upstream_params)
    first = await callback(client, code=code, state=upstream_params["state"])

    replay = await callback(client, code=code, state=upstream_params["state"])

    assert first.status == 302
    assert replay.status == 400


async def test_callback_from_other_browser_rejected(make_client: typing.Any, stub: UpstreamStub, aiohttp_client: typing.Any) -> None:
    client = await make_client()
    upstream_params = await start(client)
    code = stub.issue_code(upstream_params)
    client.session.cookie_jar.clear()

    response = await callback(client, code=code, state=upstream_params["state"])

    assert response.status == 403


# --- vault and refresh ----------------------------------------------------------


def session_id_of(client: typing.Any) -> str:
    cookies = {cookie.key: cookie.value for cookie in client.session.cookie_jar}
    return cookies["frontauth_session"]


async def test_vault_holds_upstream_tokens(make_client: typing.Any, stub: UpstreamStub) -> None:
    client = await make_client('use_userinfo = true\n')
    await sign_in(client, stub)
    services = client.app[SERVICES]

    record = await services.vault.read(session_id_of(client))
    raw = await services.driver.get(services.stores.key("vault", digest(session_id_of(client))))

    assert record.access_token == "at-initial"
    assert record.refresh_token == "rt-initial"
    assert record.subject == "alice"
    assert raw is not None
    assert b"at-initial" not in raw  # encrypted at rest


async def test_userinfo_fills_session_profile(make_client: typing.Any, stub: UpstreamStub) -> None:
    client = await make_client('use_userinfo = true\n')
    await sign_in(client, stub)
    services = client.app[SERVICES]

    session = await services.stores.get_session(session_id_of(client))

    assert session.email == "alice@idp.example"
    assert session.name == "Alice Upstream"


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 30000 + b"]" * 30000,
        b'{"sub": "alice", "email": "big@idp.example", "padding": "' + b"a" * 200_000 + b'"}',
    ],
    ids=["deeply-nested", "over-size-cap"],
)
async def test_unusable_userinfo_is_ignored(
    make_client: typing.Any, stub: UpstreamStub, aiohttp_server: typing.Any, body: bytes
) -> None:
    """Userinfo the JSON parser cannot take, or over the size cap, is skipped; the ID token still signs the user in."""
    port = await serve_body(aiohttp_server, "GET", "/userinfo", body)
    client = await make_client(f'use_userinfo = true\nuserinfo_endpoint = "http://127.0.0.1:{port}/userinfo"\n')

    response = await sign_in(client, stub)

    assert response.status == 302
    assert "code" in query(response.headers["Location"])
    session = await client.app[SERVICES].stores.get_session(session_id_of(client))
    assert session.subject == "alice"
    assert session.email is None


async def test_expiring_token_refreshed_once_under_concurrency(make_client: typing.Any, stub: UpstreamStub) -> None:
    client = await make_client()
    stub.expires_in = 30  # within the default 60 s skew
    await sign_in(client, stub)
    vault = client.app[SERVICES].vault
    stub.expires_in = 3600

    records = await asyncio.gather(*(vault.read(session_id_of(client)) for _ in range(20)))
    later = await vault.read(session_id_of(client))

    assert {record.access_token for record in records} == {"at-refreshed-1"}
    assert stub.refresh_requests == 1
    assert later.access_token == "at-refreshed-1"
    assert later.refresh_token == "rt-initial"


async def test_failed_refresh_is_reported(make_client: typing.Any, stub: UpstreamStub) -> None:
    client = await make_client()
    stub.expires_in = 30
    stub.refresh_fault = True
    await sign_in(client, stub)

    with pytest.raises(RefreshFailed):
        await client.app[SERVICES].vault.read(session_id_of(client))


async def test_fresh_token_not_refreshed(make_client: typing.Any, stub: UpstreamStub) -> None:
    client = await make_client()
    await sign_in(client, stub)

    record = await client.app[SERVICES].vault.read(session_id_of(client))

    assert record.access_token == "at-initial"
    assert stub.refresh_requests == 0


async def test_login_page_absent_in_remote_mode(make_client: typing.Any) -> None:
    client = await make_client()

    response = await client.get("/oauth/login")

    assert response.status == 404


async def test_read_limited_reads_body_arriving_in_parts() -> None:
    """The second part arrives after the read has started, as a slow or chunked response does."""
    import asyncio
    from unittest import mock

    from aiohttp import StreamReader

    from frontauth.remote import read_limited

    reader = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    reader.feed_data(b'{"access_token": ')
    reading = asyncio.create_task(read_limited(reader, 1024))
    await asyncio.sleep(0)
    reader.feed_data(b'"at"}')
    reader.feed_eof()
    assert await reading == b'{"access_token": "at"}'


async def test_read_limited_stops_past_limit() -> None:
    import asyncio
    from unittest import mock

    from aiohttp import StreamReader

    from frontauth.remote import read_limited

    reader = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    reader.feed_data(b"a" * 5000)
    reader.feed_eof()
    assert len(await read_limited(reader, 1024)) == 1025
