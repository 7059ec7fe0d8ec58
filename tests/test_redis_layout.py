"""Key layout in Redis after a full flow: names, TTLs, and no credential at rest.

The flow runs through the HTTP app on one plain Redis server and on the TLS
cluster. It registers a confidential client, then runs authorize, sign-in,
consent, code exchange and refresh. It revokes the refresh token and the
access token, and leaves one more authorization request waiting on the
consent page.
The test then lists the keys with SCAN on every primary and compares them with
the key table of the README's Storage section.
"""

from __future__ import annotations

import base64
import json
import time
import typing

import pytest

from frontauth.appkeys import SERVICES
from frontauth.tokens import digest
from tests.oauth_flow import authorize_params, exchange, get_code, new_pkce, query_of, refresh, register
from tests.redis_app import RedisTarget, StoredKey, start_app, target_for, unique_prefix

# Seconds a TTL may have run down between the write and the check.
TTL_SLACK = 5.0
# Long enough that the rotation key of the refresh is still there when the keys are listed.
REFRESH_GRACE = 30.0


def jwt_claims(token: str) -> dict[str, typing.Any]:
    """Decode the claims of a JWT without verifying it, to read its ids."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def cookie_value(http: typing.Any, name: str) -> str:
    values = [cookie.value for cookie in http.session.cookie_jar if cookie.key == name]
    assert len(values) == 1, f"expected one {name} cookie, found {len(values)}"
    return values[0]


def assert_ttl(entry: StoredKey, expected: float) -> None:
    assert entry.ttl_ms > 0, f"{entry.name} has no TTL"
    remaining = entry.ttl_ms / 1000
    assert expected - TTL_SLACK < remaining <= expected, f"{entry.name}: TTL {remaining} s, expected {expected} s"


@pytest.fixture(params=["redis", "rediss+cluster"])
def target(request: pytest.FixtureRequest) -> RedisTarget:
    return target_for(request.param, request)


async def test_full_flow_key_layout(aiohttp_client, make_settings, target: RedisTarget) -> None:
    prefix = unique_prefix()
    http = await start_app(aiohttp_client, make_settings, target, prefix, f"[tokens]\nrefresh_grace = {REFRESH_GRACE}\n")
    app_settings = http.app[SERVICES].settings

    client = await register(http, token_endpoint_auth_method="client_secret_post")
    code, verifier, _ = await get_code(http, client)
    first = await exchange(http, client, code, verifier, client_secret=client.client_secret)
    assert first.status == 200, await first.text()
    first_tokens = await first.json()
    second = await refresh(http, client, first_tokens["refresh_token"], client_secret=client.client_secret)
    assert second.status == 200, await second.text()
    second_tokens = await second.json()
    revoked_at = time.time()
    for token in (second_tokens["refresh_token"], second_tokens["access_token"]):
        revoked = await http.post(
            "/oauth/revoke", data={"token": token, "client_id": client.client_id, "client_secret": client.client_secret}
        )
        assert revoked.status == 200, await revoked.text()
    _, challenge = new_pkce()
    waiting = await http.get(
        "/oauth/authorize", params=authorize_params(client, challenge, prompt="consent"), allow_redirects=False
    )
    assert waiting.status == 302, await waiting.text()
    pending_id = query_of(waiting.headers["Location"])["pending"]

    stored = target.stored_keys(prefix)

    claims = jwt_claims(second_tokens["access_token"])
    session_cookie = cookie_value(http, "frontauth_session")
    expected_names = {
        "client": f"{prefix}client:{client.client_id}",
        "registrations": f"{prefix}ratelimit:registrations",
        "address_registrations": f"{prefix}ratelimit:registrations:127.0.0.1",
        "pending": f"{prefix}pending:{pending_id}",
        "code": f"{prefix}code:{digest(code)}",
        "refresh": f"{prefix}refresh:{digest(first_tokens['refresh_token'])}",
        "rotation": f"{prefix}rotation:{digest(first_tokens['refresh_token'])}",
        "family": f"{prefix}family:{claims['fid']}",
        "session": f"{prefix}session:{digest(session_cookie)}",
        "consent": f"{prefix}consent:{digest(claims['sub'] + chr(0) + client.client_id + chr(0) + claims['aud'])}",
        "revoked": f"{prefix}revoked:{claims['jti']}",
    }
    # Rate-limit windows, one per limited endpoint and client address.
    windows = {
        name: item
        for name, item in stored.items()
        if name.startswith(f"{prefix}ratelimit:") and not name.startswith(expected_names["registrations"])
    }
    limited = ("authorize", "login", "register", "token")
    assert sorted(windows) == [f"{prefix}ratelimit:{endpoint}:127.0.0.1" for endpoint in limited]
    for window in windows.values():
        assert window.kind == "zset"
        assert_ttl(window, app_settings.ratelimit.window)
    assert sorted(set(stored) - set(windows)) == sorted(expected_names.values())
    entry = {kind: stored[name] for kind, name in expected_names.items()}

    assert entry["client"].ttl_ms == -1
    # The registration cap counts within registration.unused_ttl.
    assert_ttl(entry["registrations"], app_settings.registration.unused_ttl)
    assert_ttl(entry["address_registrations"], app_settings.registration.address_window)
    assert_ttl(entry["pending"], 600)
    assert_ttl(entry["code"], 60)
    assert_ttl(entry["refresh"], app_settings.refresh_ttl)
    assert_ttl(entry["rotation"], REFRESH_GRACE)
    assert_ttl(entry["family"], app_settings.refresh_ttl)
    assert_ttl(entry["session"], app_settings.session.ttl)
    assert_ttl(entry["consent"], app_settings.refresh_ttl)
    assert_ttl(entry["revoked"], claims["exp"] - revoked_at + app_settings.tokens.leeway)
    assert entry["registrations"].kind == "zset"
    assert entry["address_registrations"].kind == "zset"
    assert all(item.kind == "string" for name, item in entry.items() if "registrations" not in name)

    # The redeemed code and the rotated refresh token stay as markers until they expire.
    assert json.loads(entry["code"].contents)["consumed"] is True
    assert json.loads(entry["refresh"].contents)["rotated"] is True
    assert json.loads(entry["family"].contents)["revoked"] is True
    # The session is sealed: a version byte, then AES-GCM output with no readable field.
    assert entry["session"].contents[:1] == b"\x01"
    assert claims["sub"].encode() not in entry["session"].contents
    # The successor tokens kept for retries are sealed the same way.
    assert entry["rotation"].contents[:1] == b"\x01"

    credentials = {
        "code": code,
        "code_verifier": verifier,
        "first access token": first_tokens["access_token"],
        "first refresh token": first_tokens["refresh_token"],
        "second access token": second_tokens["access_token"],
        "second refresh token": second_tokens["refresh_token"],
        "session cookie": session_cookie,
        "browser cookie": cookie_value(http, "frontauth_browser"),
        "client secret": client.client_secret,
    }
    for label, secret in credentials.items():
        assert secret
        for item in stored.values():
            assert secret not in item.name, f"{label} appears in the key name {item.name}"
            assert secret.encode() not in item.contents, f"{label} appears in the value of {item.name}"
