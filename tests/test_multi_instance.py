"""Several ``frontauth serve`` processes sharing one Redis, as behind a load balancer.

The instances share the storage, the signing key, the server secret and
``MACHINE_ID``, and one issuer: ``public_url`` names the first instance, as it
would name the load balancer. Redirects therefore point at the first
instance's address. The browser below follows only their path and query, and
sends the request to whichever instance the step is meant to reach, as a load
balancer would.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import secrets
import typing

import aiohttp
import pytest

from frontauth import keys
from tests.oauth_flow import (
    Client,
    approve,
    authorize_params,
    exchange,
    get_code,
    new_pkce,
    query_of,
    refresh,
    register,
    sign_in,
)
from tests.processes import ServerProcess, free_port, start_frontauth
from tests.redis_app import plain_target, unique_prefix
from tests.redis_servers import RedisServer

UNDECRYPTABLE_LOG = "cannot be decrypted"


class Instances:
    """frontauth processes of one test, each in its own folder, all stopped at the end."""

    def __init__(self, root: pathlib.Path, config_file: pathlib.Path, env: dict[str, str], first_port: int) -> None:
        self.root = root
        self.first_port = first_port
        self.config_file = config_file
        self.env = env
        self.started: list[ServerProcess] = []

    def start(self, name: str, port: int, env: dict[str, str] | None = None) -> ServerProcess:
        workdir = self.root / name
        workdir.mkdir(exist_ok=True)
        server = start_frontauth(str(workdir), str(self.config_file), env={**self.env, **(env or {})}, port=port)
        self.started.append(server)
        return server

    async def start_in_parallel(self, *instances: tuple[str, int, dict[str, str] | None]) -> list[ServerProcess]:
        """Start several instances at once, because each start takes a second or two."""
        started = [asyncio.to_thread(self.start, name, port, env) for name, port, env in instances]
        return list(await asyncio.gather(*started))

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()


@pytest.fixture
def instances(tmp_path: pathlib.Path, redis_plain: RedisServer) -> typing.Iterator[Instances]:
    first_port = free_port()
    config_file = tmp_path / "frontauth.toml"
    config_file.write_text(
        f'public_url = "http://127.0.0.1:{first_port}"\n' + plain_target(redis_plain).storage_toml(unique_prefix())
    )
    env = {
        "JWT_SIGNING_KEY": json.dumps(keys.generate("ES256", "shared")),
        "FRONTAUTH_SERVER_SECRET": secrets.token_urlsafe(32),
        "MACHINE_ID": "instance-group-a",
    }
    group = Instances(tmp_path, config_file, env, first_port)
    yield group
    group.stop_all()


def browser(url: str, jar: aiohttp.CookieJar) -> aiohttp.ClientSession:
    """Return a client session on one instance. Sessions that share ``jar`` act as one browser."""
    return aiohttp.ClientSession(base_url=url, cookie_jar=jar)


async def introspect(http: aiohttp.ClientSession, client: Client, token: str) -> dict[str, typing.Any]:
    response = await http.post("/oauth/introspect", data={"token": token, "client_id": client.client_id})
    assert response.status == 200, await response.text()
    return await response.json()


async def start_authorization(http: aiohttp.ClientSession, client: Client) -> tuple[str, str, dict[str, str]]:
    """Send an authorization request.

    Returns:
        The response's Location, the code_verifier and the request parameters.
    """
    verifier, challenge = new_pkce()
    params = authorize_params(client, challenge)
    response = await http.get("/oauth/authorize", params=params, allow_redirects=False)
    assert response.status == 302, await response.text()
    return response.headers["Location"], verifier, params


async def test_flow_spans_instances_and_survives_restart(instances: Instances) -> None:
    first, second = await instances.start_in_parallel(
        ("first", instances.first_port, None), ("second", free_port(), None)
    )
    issuer = first.url
    jar = aiohttp.CookieJar(unsafe=True)
    async with browser(first.url, jar) as on_first, browser(second.url, jar) as on_second:
        client = await register(on_first)

        # Authorize on the first, sign in and consent on the second.
        location, verifier, params = await start_authorization(on_first, client)
        assert location.startswith(f"{issuer}/oauth/login?pending=")
        location = await sign_in(on_second, location)
        assert location.startswith(f"{issuer}/oauth/consent?pending=")
        location = await approve(on_second, location)
        assert location.startswith(client.redirect_uri)
        query = query_of(location)
        assert query["state"] == params["state"]
        assert query["iss"] == issuer

        # Exchange on the first, refresh on the second, revoke on the first.
        exchanged = await exchange(on_first, client, query["code"], verifier)
        assert exchanged.status == 200, await exchanged.text()
        first_tokens = await exchanged.json()
        refreshed = await refresh(on_second, client, first_tokens["refresh_token"])
        assert refreshed.status == 200, await refreshed.text()
        second_tokens = await refreshed.json()
        revoked = await on_first.post(
            "/oauth/revoke", data={"token": second_tokens["refresh_token"], "client_id": client.client_id}
        )
        assert revoked.status == 200

        for http in (on_first, on_second):
            for token in (first_tokens["access_token"], second_tokens["access_token"], second_tokens["refresh_token"]):
                assert await introspect(http, client, token) == {"active": False}
            rejected = await refresh(http, client, second_tokens["refresh_token"])
            assert rejected.status == 400
            assert (await rejected.json())["error"] == "invalid_grant"

        # A second grant, taken on the second instance, must outlive a restart of both.
        code, kept_verifier, _ = await get_code(on_second, client)
        restart_grant = await exchange(on_second, client, code, kept_verifier)
        assert restart_grant.status == 200, await restart_grant.text()
        kept_refresh = (await restart_grant.json())["refresh_token"]

    first.stop()
    second.stop()
    # The third instance has another MACHINE_ID, so it derives another record key.
    first, second, third = await instances.start_in_parallel(
        ("first", first.port, None),
        ("second", second.port, None),
        ("third", free_port(), {"MACHINE_ID": "instance-group-b"}),
    )
    async with browser(first.url, jar) as on_first, browser(second.url, jar) as on_second:
        after_restart = await refresh(on_first, client, kept_refresh)
        assert after_restart.status == 200, await after_restart.text()
        rotated = (await after_restart.json())["refresh_token"]
        on_other = await refresh(on_second, client, rotated)
        assert on_other.status == 200, await on_other.text()
        still_revoked = await refresh(on_second, client, second_tokens["refresh_token"])
        assert still_revoked.status == 400

        # The session cookie still signs the browser in on the group's instances.
        location, _, _ = await start_authorization(on_first, client)
        assert location.startswith(client.redirect_uri)
        assert "code" in query_of(location)

    # The third instance cannot open the session record, so the browser signs in again.
    async with browser(third.url, jar) as on_third:
        for _ in range(2):
            location, verifier, _ = await start_authorization(on_third, client)
            assert location.startswith(f"{issuer}/oauth/login?pending=")
        # Signing in again works; the remembered consent is not encrypted, so the code follows at once.
        location = await sign_in(on_third, location)
        assert location.startswith(client.redirect_uri)
        exchanged = await exchange(on_third, client, query_of(location)["code"], verifier)
        assert exchanged.status == 200, await exchanged.text()
    assert third.log().count(UNDECRYPTABLE_LOG) == 1
    assert UNDECRYPTABLE_LOG not in first.log()
