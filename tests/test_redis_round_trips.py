"""Redis round trips of the steady-state flow, and clients shared by two instances.

The round-trip tests record with MONITOR what one app sends to a real Redis
for one authorization request, one code exchange and one refresh, after the
person has signed in and consented. Commands that Lua scripts run are left
out, because they cost no round trip. The budgets are frontauth's targets:
at most 8 round trips per complete flow and 6 per refresh. The client, the
session, the code and the refresh token are read with the rate limiter's
count, so no command of their own reads them.

The client tests run two apps on one Redis, as two instances behind a load
balancer, and check that a client deleted or updated through RFC 7592 on one
takes effect on the other at its next request.
"""

from __future__ import annotations

import typing
import uuid

import pytest
import redis.asyncio

from tests.oauth_flow import authorize_params, exchange, get_code, new_pkce, query_of, refresh, register
from tests.redis_app import RedisTarget, plain_target, start_app, target_for, unique_prefix
from tests.redis_servers import HOST, PASSWORD, RedisServer

FLOW_BUDGET = 8
REFRESH_BUDGET = 6


def command_names(commands: list[str]) -> list[str]:
    return [command.split(" ", 1)[0].upper() for command in commands]


class Monitor:
    """Commands that clients send to one Redis server, recorded with MONITOR."""

    def __init__(self, server: RedisServer, prefix: str) -> None:
        self.prefix = prefix
        self._listener = redis.asyncio.Redis(host=HOST, port=server.port, password=PASSWORD)
        self._marker_client = redis.asyncio.Redis(host=HOST, port=server.port, password=PASSWORD)

    async def record(self, action: typing.Callable[[], typing.Awaitable[typing.Any]]) -> list[str]:
        """Run ``action`` and return the commands on this test's keys that clients sent meanwhile, with their arguments."""
        marker = f"end-of-step-{uuid.uuid4().hex}"
        sent: list[str] = []
        async with self._listener.monitor() as monitor:
            await action()
            await self._marker_client.echo(marker)
            while True:
                entry = await monitor.next_command()
                if entry["command"] == f"ECHO {marker}":
                    return sent
                if entry["client_type"] != "lua" and self.prefix in entry["command"]:
                    sent.append(entry["command"])

    async def close(self) -> None:
        await self._listener.aclose()
        await self._marker_client.aclose()


async def test_steady_state_flow_round_trips(aiohttp_client, make_settings, redis_plain: RedisServer) -> None:
    prefix = unique_prefix()
    http = await start_app(aiohttp_client, make_settings, plain_target(redis_plain), prefix)
    client = await register(http)
    # The first flow signs in and consents, so the recorded one finds both stored.
    code, verifier, _ = await get_code(http, client)
    first = await exchange(http, client, code, verifier)
    assert first.status == 200, await first.text()
    refresh_token = (await first.json())["refresh_token"]

    monitor = Monitor(redis_plain, prefix)
    try:
        verifier, challenge = new_pkce()
        redirected: list[typing.Any] = []

        async def authorize() -> None:
            response = await http.get(
                "/oauth/authorize", params=authorize_params(client, challenge), allow_redirects=False
            )
            redirected.append(response)

        authorize_commands = await monitor.record(authorize)
        assert redirected[0].status == 302, await redirected[0].text()
        code = query_of(redirected[0].headers["Location"])["code"]

        exchanged: list[typing.Any] = []

        async def token() -> None:
            exchanged.append(await exchange(http, client, code, verifier))

        token_commands = await monitor.record(token)
        assert exchanged[0].status == 200, await exchanged[0].text()

        refreshed: list[typing.Any] = []

        async def refresh_grant() -> None:
            refreshed.append(await refresh(http, client, refresh_token))

        refresh_commands = await monitor.record(refresh_grant)
        assert refreshed[0].status == 200, await refreshed[0].text()
    finally:
        await monitor.close()

    authorize_names, token_names, refresh_names = (
        command_names(authorize_commands), command_names(token_commands), command_names(refresh_commands)
    )
    assert len(authorize_names) + len(token_names) <= FLOW_BUDGET, f"authorize sent {authorize_names}, token {token_names}"
    assert len(refresh_names) <= REFRESH_BUDGET, f"refresh sent {refresh_names}"
    for names in (authorize_names, token_names, refresh_names):
        assert names[0] == "EVALSHA"
        assert names.count("EVALSHA") == 1
    read_ahead = [f"{prefix}{kind}:" for kind in ("client", "session", "code", "refresh")]
    separate_reads = [
        command
        for command in authorize_commands + token_commands + refresh_commands
        if command.startswith("GET ") and any(command.startswith(f"GET {start}") for start in read_ahead)
    ]
    assert separate_reads == []


async def registered_with_token(http: typing.Any) -> dict[str, typing.Any]:
    response = await http.post(
        "/oauth/register",
        json={"redirect_uris": ["http://127.0.0.1:33418/callback"], "token_endpoint_auth_method": "none"},
    )
    assert response.status == 201, await response.text()
    return typing.cast(dict[str, typing.Any], await response.json())


def configuration_path(body: dict[str, typing.Any]) -> str:
    return "/oauth/register/" + str(body["client_id"])


async def authorize_status(http: typing.Any, client_id: str, redirect_uri: str) -> int:
    _, challenge = new_pkce()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": "state-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    response = await http.get("/oauth/authorize", params=params, allow_redirects=False)
    return int(response.status)


@pytest.fixture(params=["redis", "rediss+cluster"])
def target(request: pytest.FixtureRequest) -> RedisTarget:
    return target_for(request.param, request)


async def test_deleted_client_rejected_by_other_instance(aiohttp_client, make_settings, target: RedisTarget) -> None:
    prefix = unique_prefix()
    first = await start_app(aiohttp_client, make_settings, target, prefix)
    second = await start_app(aiohttp_client, make_settings, target, prefix)
    body = await registered_with_token(first)
    redirect_uri = body["redirect_uris"][0]
    # The second instance accepts the client: the request goes on to sign-in.
    assert await authorize_status(second, body["client_id"], redirect_uri) == 302

    deleted = await first.delete(
        configuration_path(body), headers={"Authorization": f"Bearer {body['registration_access_token']}"}
    )
    assert deleted.status == 204, await deleted.text()

    assert await authorize_status(second, body["client_id"], redirect_uri) == 400
    token = await second.post(
        "/oauth/token", data={"grant_type": "authorization_code", "code": "x", "client_id": body["client_id"]}
    )
    assert token.status == 401
    assert (await token.json())["error"] == "invalid_client"


async def test_updated_client_applies_on_other_instance(aiohttp_client, make_settings, target: RedisTarget) -> None:
    prefix = unique_prefix()
    first = await start_app(aiohttp_client, make_settings, target, prefix)
    second = await start_app(aiohttp_client, make_settings, target, prefix)
    body = await registered_with_token(first)
    old_uri, new_uri = body["redirect_uris"][0], "http://127.0.0.1:40000/new-callback"
    assert await authorize_status(second, body["client_id"], old_uri) == 302

    update = {"client_id": body["client_id"], "redirect_uris": [new_uri], "token_endpoint_auth_method": "none"}
    updated = await first.put(
        configuration_path(body), json=update, headers={"Authorization": f"Bearer {body['registration_access_token']}"}
    )
    assert updated.status == 200, await updated.text()

    assert await authorize_status(second, body["client_id"], old_uri) == 400
    assert await authorize_status(second, body["client_id"], new_uri) == 302
