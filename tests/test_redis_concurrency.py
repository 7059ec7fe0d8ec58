"""Single use of codes and refresh tokens under concurrent requests, on real Redis.

The requests go through the HTTP app, so the whole grant runs concurrently:
the read, the atomic swap on the server, and the revocation of the family by
the requests that lose the race. Rate limiting is off, because the requests
all come from one address.
"""

from __future__ import annotations

import asyncio
import typing

import pytest

from tests.oauth_flow import Client, exchange, get_code, refresh, register
from tests.redis_app import RedisTarget, start_app, target_for, unique_prefix

CODE_REDEMPTIONS = 100
REFRESH_USES = 20
# Without the refresh grace window, so that concurrent refreshes are reuse;
# tests/test_refresh_grace.py runs them inside the window.
NO_RATE_LIMIT = "[ratelimit]\nenabled = false\n[tokens]\nrefresh_grace = 0\n"


@pytest.fixture(params=["redis", "rediss+cluster"])
def target(request: pytest.FixtureRequest) -> RedisTarget:
    return target_for(request.param, request)


@pytest.fixture
async def http(aiohttp_client, make_settings, target: RedisTarget) -> typing.Any:
    return await start_app(aiohttp_client, make_settings, target, unique_prefix(), NO_RATE_LIMIT)


async def results(responses: typing.Sequence[typing.Any]) -> list[tuple[int, dict[str, typing.Any]]]:
    return [(response.status, await response.json()) for response in responses]


async def introspect(http: typing.Any, client: Client, token: str) -> dict[str, typing.Any]:
    response = await http.post("/oauth/introspect", data={"token": token, "client_id": client.client_id})
    assert response.status == 200, await response.text()
    return await response.json()


async def test_concurrent_code_redemption_one_wins(http) -> None:
    client = await register(http)
    code, verifier, _ = await get_code(http, client)

    responses = await asyncio.gather(
        *(exchange(http, client, code, verifier) for _ in range(CODE_REDEMPTIONS))
    )
    outcomes = await results(responses)

    winners = [body for status, body in outcomes if status == 200]
    losers = [(status, body) for status, body in outcomes if status != 200]
    assert len(winners) == 1
    assert len(losers) == CODE_REDEMPTIONS - 1
    for status, body in losers:
        assert status == 400
        assert body == {"error": "invalid_grant", "error_description": "the code was already used"}
    # RFC 6749 §4.1.2: the second redemption revokes what the first one issued.
    assert await introspect(http, client, winners[0]["access_token"]) == {"active": False}
    after = await refresh(http, client, winners[0]["refresh_token"])
    assert after.status == 400
    assert await after.json() == {"error": "invalid_grant", "error_description": "the refresh token was revoked"}


async def test_concurrent_refresh_one_wins_then_family_revoked(http) -> None:
    client = await register(http)
    code, verifier, _ = await get_code(http, client)
    issued = await exchange(http, client, code, verifier)
    assert issued.status == 200, await issued.text()
    refresh_token = (await issued.json())["refresh_token"]

    responses = await asyncio.gather(*(refresh(http, client, refresh_token) for _ in range(REFRESH_USES)))
    outcomes = await results(responses)

    winners = [body for status, body in outcomes if status == 200]
    losers = [(status, body) for status, body in outcomes if status != 200]
    assert len(winners) == 1
    assert len(losers) == REFRESH_USES - 1
    for status, body in losers:
        assert status == 400
        assert body["error"] == "invalid_grant"
        # A request that read the record after another one revoked the family
        # gets "revoked", and one that read it already rotated gets "already used".
        assert body["error_description"] in ("the refresh token was already used", "the refresh token was revoked")

    # RFC 9700 §4.14.2: reuse revokes the family, so the winner's successor fails too.
    successor = await refresh(http, client, winners[0]["refresh_token"])
    assert successor.status == 400
    assert await successor.json() == {"error": "invalid_grant", "error_description": "the refresh token was revoked"}
    assert await introspect(http, client, winners[0]["access_token"]) == {"active": False}
    assert await introspect(http, client, winners[0]["refresh_token"]) == {"active": False}
