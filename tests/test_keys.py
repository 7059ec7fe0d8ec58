"""Signing keys across restarts and rollovers, over real HTTP to `frontauth serve`."""

from __future__ import annotations

import json

import aiohttp
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from frontauth import keys
from tests.oauth_flow import exchange, get_code, register
from tests.processes import run_frontauth, start_frontauth


@pytest.fixture
def servers():
    started = []
    yield started
    for server in started:
        server.stop()


async def _issue_access_token(url: str) -> str:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(base_url=url, cookie_jar=jar) as http:
        client = await register(http)
        code, verifier, _ = await get_code(http, client)
        response = await exchange(http, client, code, verifier)
        assert response.status == 200, await response.text()
        return (await response.json())["access_token"]


async def _userinfo_status(url: str, token: str) -> int:
    async with aiohttp.ClientSession() as http:
        response = await http.get(f"{url}/oauth/userinfo", headers={"Authorization": f"Bearer {token}"})
        return response.status


def _start(tmp_path, servers, port, **env):
    server = start_frontauth(str(tmp_path), port=port, env=env)
    servers.append(server)
    return server


async def test_restart_with_same_env_key_keeps_tokens_valid(tmp_path, servers):
    signing = json.dumps(keys.generate("ES256", "key-1"))
    first = _start(tmp_path, servers, None, JWT_SIGNING_KEY=signing)
    token = await _issue_access_token(first.url)
    assert await _userinfo_status(first.url, token) == 200
    first.stop()
    second = _start(tmp_path, servers, first.port, JWT_SIGNING_KEY=signing)
    assert await _userinfo_status(second.url, token) == 200


async def test_restart_with_development_key_file_keeps_tokens_valid(tmp_path, servers):
    first = _start(tmp_path, servers, None)
    assert "generated a development signing key in .frontauth/signing-key.json" in first.log()
    token = await _issue_access_token(first.url)
    first.stop()
    second = _start(tmp_path, servers, first.port)
    assert "using the development signing key in .frontauth/signing-key.json" in second.log()
    assert await _userinfo_status(second.url, token) == 200


async def test_previous_key_verifies_and_unknown_key_does_not(tmp_path, servers):
    old = keys.generate("ES256", "old")
    new = keys.generate("EdDSA", "new")
    first = _start(tmp_path, servers, None, JWT_SIGNING_KEY=json.dumps(old))
    token = await _issue_access_token(first.url)
    first.stop()

    rolled = _start(
        tmp_path, servers, first.port,
        JWT_SIGNING_KEY=json.dumps(new), FRONTAUTH_KEYS_PREVIOUS=json.dumps([json.dumps(keys.public_half(old))]),
    )
    async with aiohttp.ClientSession() as http:
        jwks = await (await http.get(f"{rolled.url}/.well-known/jwks.json")).json()
    assert [k["kid"] for k in jwks["keys"]] == ["new", "old"]
    assert all("d" not in k for k in jwks["keys"])
    assert await _userinfo_status(rolled.url, token) == 200
    new_token = await _issue_access_token(rolled.url)
    decoded = jwt.decode(new_token, KeySet.import_key_set(jwks), algorithms=["EdDSA"])
    assert decoded.header["kid"] == "new"
    rolled.stop()

    removed = _start(tmp_path, servers, first.port, JWT_SIGNING_KEY=json.dumps(new))
    assert await _userinfo_status(removed.url, token) == 401
    assert await _userinfo_status(removed.url, new_token) == 200


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_keys_generate_prints_usable_pair(tmp_path, alg):
    result = run_frontauth(str(tmp_path), "keys", "generate", "--alg", alg, "--kid", "k1")
    assert result.returncode == 0, result.stderr
    pair = json.loads(result.stdout)
    assert pair["private"]["kid"] == "k1"
    assert pair["private"]["alg"] == alg
    assert "d" in pair["private"]
    assert "d" not in pair["public"]
    assert pair["public"]["kid"] == "k1"
    signing = keys.load_from_jwk(pair["private"])
    token = jwt.encode({"alg": alg, "kid": "k1"}, {"sub": "x"}, signing, algorithms=[alg])
    verified = jwt.decode(token, KeySet.import_key_set({"keys": [pair["public"]]}), algorithms=[alg])
    assert verified.claims == {"sub": "x"}
