"""The command line tools: users add, clients hash-secret, and a users file at sign-in."""

from __future__ import annotations

import os
import tomllib

import pytest

from frontauth import config
from frontauth.users import UserDirectory, verify_password
from tests.processes import run_frontauth, start_frontauth


def test_users_add_writes_scrypt_entry(tmp_path):
    result = run_frontauth(str(tmp_path), "users", "add", "alice", "--file", "users.toml",
                           "--email", "alice@example.com", stdin="correct horse battery\n")
    assert result.returncode == 0, result.stderr
    entry = tomllib.loads((tmp_path / "users.toml").read_text())["users"]["alice"]
    assert entry["password_hash"].startswith("scrypt$16384$8$1$")
    assert entry["email"] == "alice@example.com"
    assert verify_password("correct horse battery", entry["password_hash"])
    assert not verify_password("wrong", entry["password_hash"])
    assert "correct horse battery" not in result.stdout + result.stderr


def test_users_add_keeps_other_users(tmp_path):
    run_frontauth(str(tmp_path), "users", "add", "alice", "--file", "u.toml", stdin="password-one\n")
    run_frontauth(str(tmp_path), "users", "add", "bob", "--file", "u.toml", stdin="password-two\n")
    users = tomllib.loads((tmp_path / "u.toml").read_text())["users"]
    assert sorted(users) == ["alice", "bob"]


def test_users_add_rejects_short_password(tmp_path):
    result = run_frontauth(str(tmp_path), "users", "add", "alice", "--file", "u.toml", stdin="short\n")
    assert result.returncode == 2
    assert result.stderr.strip() == "frontauth: the password must have at least 8 characters"
    assert not (tmp_path / "u.toml").exists()


def test_hash_secret_output_verifies(tmp_path):
    result = run_frontauth(str(tmp_path), "clients", "hash-secret", stdin="a-client-secret-of-some-length\n")
    assert result.returncode == 0
    assert verify_password("a-client-secret-of-some-length", result.stdout.strip())


async def test_users_file_signs_in_known_user_only(tmp_path):
    run_frontauth(str(tmp_path), "users", "add", "alice", "--file", "u.toml", stdin="password-one\n")
    settings = config.load(environ={"FRONTAUTH_LOGIN_USERS_FILE": str(tmp_path / "u.toml")})
    directory = UserDirectory(settings)
    assert directory.development_login is False
    identity = await directory.authenticate("alice", "password-one")
    assert identity is not None
    assert identity.subject == "alice"
    assert await directory.authenticate("alice", "password-two") is None
    assert await directory.authenticate("mallory", "password-one") is None


def test_users_file_rejects_unsalted_sha256(tmp_path):
    users = tmp_path / "u.toml"
    users.write_text('[users.alice]\npassword_hash = "sha256$' + "A" * 43 + '"\n')
    with pytest.raises(config.ConfigError) as caught:
        UserDirectory(config.load(environ={"FRONTAUTH_LOGIN_USERS_FILE": str(users)}))
    assert "users.alice.password_hash is not an scrypt hash" in str(caught.value)
    assert "login.users_file" in str(caught.value)


async def test_authenticate_hook_is_called(tmp_path, monkeypatch):
    (tmp_path / "directory_hook.py").write_text(
        "async def check(username, password):\n"
        "    if (username, password) == ('carol', 'letmein-please'):\n"
        "        return {'sub': 'user-42', 'email': 'carol@example.com'}\n"
        "    return None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = config.load(environ={"FRONTAUTH_LOGIN_AUTHENTICATE": "directory_hook:check"})
    directory = UserDirectory(settings)
    identity = await directory.authenticate("carol", "letmein-please")
    assert identity is not None
    assert identity.subject == "user-42"
    assert identity.email == "carol@example.com"
    assert await directory.authenticate("carol", "nope") is None


def test_users_add_rejects_line_breaks(tmp_path):
    result = run_frontauth(str(tmp_path), "users", "add", "carol", "--file", "u.toml",
                           "--email", 'x"\nevil = "1', stdin="password-one\n")
    assert result.returncode == 1
    assert result.stderr.strip() == "frontauth: the e-mail address must be printable text without line breaks"
    assert not (tmp_path / "u.toml").exists()


def test_users_add_escapes_quotes(tmp_path):
    result = run_frontauth(str(tmp_path), "users", "add", 'we"ird\\name', "--file", "u.toml",
                           "--display-name", 'Dana "D" O\'Neil', stdin="password-one\n")
    assert result.returncode == 0, result.stderr
    users = tomllib.loads((tmp_path / "u.toml").read_text())["users"]
    assert users['we"ird\\name']["name"] == 'Dana "D" O\'Neil'


@pytest.mark.parametrize(
    ("choice", "hide_uvloop", "expected"),
    [
        ("asyncio", False, "event loop: asyncio\n"),
        ("uvloop", False, "event loop: uvloop "),
        ("auto", False, "event loop: uvloop "),
        ("auto", True, "event loop: asyncio (uvloop is not installed)\n"),
    ],
    ids=["asyncio", "uvloop", "auto-with-uvloop", "auto-without-uvloop"],
)
def test_serve_logs_event_loop(tmp_path, choice, hide_uvloop, expected):
    env = {"FRONTAUTH_SERVER_EVENT_LOOP": choice}
    if hide_uvloop:
        # A module of that name earlier on the path makes `import uvloop` fail as if it were not installed.
        hidden = tmp_path / "hide"
        hidden.mkdir()
        (hidden / "uvloop.py").write_text('raise ImportError("uvloop is hidden in this test")\n')
        env["PYTHONPATH"] = os.pathsep.join([str(hidden), *filter(None, [os.environ.get("PYTHONPATH")])])
    server = start_frontauth(str(tmp_path), env=env)
    server.stop()
    assert expected in server.log()


# Requests that aiohttp's parser rejects before any middleware runs.
UNPARSABLE_REQUESTS = {
    "BadHttpMessage": b"POST /oauth/token HTTP/1.1\r\nHost: h\r\nContent-Type: a\r\nContent-Type: b\r\n"
                      b"Content-Length: 0\r\n\r\n",
    "InvalidURLError": b"GET /oauth/authorize?code=PARSESECRET\x01 HTTP/1.1\r\nHost: h\r\n\r\n",
    "LineTooLong": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n",
}


def test_unparsable_request_logs_one_info_line(tmp_path):
    import socket

    server = start_frontauth(str(tmp_path))
    try:
        for raw in UNPARSABLE_REQUESTS.values():
            with socket.create_connection(("127.0.0.1", server.port)) as connection:
                connection.sendall(raw)
                assert connection.recv(4096).startswith(b"HTTP/1.0 400 ")
    finally:
        server.stop()
    log = server.log()
    assert "Traceback" not in log
    assert " ERROR " not in log
    assert "PARSESECRET" not in log
    for name in UNPARSABLE_REQUESTS:
        assert f"INFO frontauth.access: rejected unparsable request from 127.0.0.1: {name} (400)\n" in log
