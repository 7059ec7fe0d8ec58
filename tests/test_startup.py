"""Start-up of `frontauth serve`: a bad setting stops it with one clear line."""

from __future__ import annotations

import json
import os

import pytest

from frontauth import keys
from tests.processes import free_port, run_frontauth

PRIVATE = keys.generate("ES256", "k-private")


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "frontauth.toml"
    path.write_text(text)
    return str(path)


CASES = [
    pytest.param(
        '[storage]\nurl = "mongodb://localhost"\n', {},
        "frontauth: invalid setting storage.url (from file {config}): unknown storage driver 'mongodb'",
        id="unknown-driver",
    ),
    pytest.param(
        "", {"JWT_SIGNING_KEY": '{"kty": "EC", "crv": "P-256", "x": "bad"'},
        "frontauth: invalid setting keys.sign_key (from environment variable JWT_SIGNING_KEY): "
        "expected a JWK as a JSON object; the value is not valid JSON",
        id="malformed-jwk",
    ),
    pytest.param(
        "", {"JWT_SIGNING_KEY": json.dumps({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA", "d": "AAAA"})},
        "frontauth: invalid setting keys.sign_key (from environment variable JWT_SIGNING_KEY): invalid JWK",
        id="invalid-ec-point",
    ),
    pytest.param(
        "[keys]\nprevious = ['" + json.dumps(PRIVATE) + "']\n", {},
        "frontauth: invalid setting keys.previous[0] (from file {config}): previous keys are published "
        "in the JWKS and must be public; remove d",
        id="private-previous-key",
    ),
    pytest.param(
        'profile = "production"\n[login]\ndevelopment_login = true\n', {},
        "frontauth: invalid setting login.development_login (from file {config}): the development sign-in "
        "accepts anyone and is refused in the production profile",
        id="development-login-in-production",
    ),
    pytest.param(
        'profile = "production"\n', {"FRONTAUTH_SERVER_SECRET": "x" * 40, "JWT_SIGNING_KEY": json.dumps(PRIVATE)},
        "frontauth: invalid setting login.users_file: set login.users_file or login.authenticate in the production profile",
        id="production-without-users",
    ),
    pytest.param(
        'profile = "production"\n', {},
        "frontauth: invalid setting server.secret: required in the production profile (FRONTAUTH_SERVER_SECRET)",
        id="production-without-secret",
    ),
    pytest.param(
        'profile = "staging"\n', {},
        "frontauth: invalid setting server.secret: required in the staging profile (FRONTAUTH_SERVER_SECRET)",
        id="staging-without-secret",
    ),
    pytest.param(
        'mode = "gateway"\n', {},
        "frontauth: invalid setting mode (from file {config}): expected one of local, public, transparent, remote, got 'gateway'",
        id="unknown-mode",
    ),
    pytest.param(
        "[server]\nport = 70000\n", {},
        "frontauth: invalid setting server.port (from file {config}): expected a port between 1 and 65535, got 70000",
        id="port-out-of-range",
    ),
    pytest.param(
        "[tokens]\naccess_ttl = \"soon\"\n", {},
        "frontauth: invalid setting tokens.access_ttl (from file {config}): expected an integer, got 'soon'",
        id="wrong-type",
    ),
    pytest.param(
        "[tokens]\nacess_ttl = 10\n", {},
        "frontauth: invalid setting tokens.acess_ttl (from file {config}): unknown setting",
        id="misspelt-setting",
    ),
    pytest.param(
        "", {"FRONTAUTH_TOKENS_ACCESS_TTL": "-5"},
        "frontauth: invalid setting tokens.access_ttl (from environment variable FRONTAUTH_TOKENS_ACCESS_TTL): "
        "expected a positive number of seconds, got -5",
        id="negative-lifetime-from-env",
    ),
    pytest.param(
        "[login]\nusers_file = \"missing-users.toml\"\n", {},
        "frontauth: invalid setting login.users_file (from file {config}): cannot read 'missing-users.toml': No such file or directory",
        id="missing-users-file",
    ),
    pytest.param(
        "", {"FRONTAUTH_PUBLIC_URL": "http://u:PWSECRET1@127.0.0.1:1"},
        "frontauth: invalid setting public_url (from environment variable FRONTAUTH_PUBLIC_URL): "
        "must not carry a user name or password, got 'http://***@127.0.0.1:1'",
        id="public-url-password",
    ),
    pytest.param(
        'resources = ["https://u:PWSECRET1@mcp.example.com/mcp"]\n', {},
        "frontauth: invalid setting resources[0] (from file {config}): "
        "must not carry a user name or password, got 'https://***@mcp.example.com/mcp'",
        id="resource-password",
    ),
    pytest.param(
        '[storage]\nurl = "sqlite:///auth%00x.db"\n', {},
        "frontauth: invalid setting storage.url (from file {config}): the database path contains a NUL character",
        id="sqlite-nul",
    ),
    pytest.param(
        '[server]\ntls_cert = "."\ntls_key = "."\n', {},
        "frontauth: invalid setting server.tls_cert (from file {config}): '.' is not a regular file",
        id="tls-cert-folder",
    ),
    pytest.param(
        "this is not toml", {},
        "frontauth: invalid setting --config (from command line): cannot read '{config}'",
        id="invalid-toml",
    ),
]


@pytest.mark.parametrize(("toml", "env", "expected"), CASES)
def test_bad_setting_stops_startup(tmp_path, toml, env, expected):
    config = _write(tmp_path, toml)
    port_flag = [] if "port" in toml else ["--port", str(free_port())]
    result = run_frontauth(str(tmp_path), "serve", "--config", config, *port_flag, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(expected.format(config=config)), lines[0]
    assert "Traceback" not in result.stderr


def test_config_not_utf8_is_one_line(tmp_path):
    config = tmp_path / "frontauth.toml"
    config.write_bytes(b"\xff\xfe garbage\n")
    result = run_frontauth(str(tmp_path), "serve", "--config", str(config), "--port", str(free_port()))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"frontauth: invalid setting --config (from command line): cannot read {str(config)!r}: "
        "not UTF-8 text (invalid byte at offset 0)"
    )


@pytest.mark.parametrize(
    ("setting", "flag_or_env"),
    [
        ("--config", None),
        ("login.users_file", "FRONTAUTH_LOGIN_USERS_FILE"),
        ("keys.sign_key_file", "FRONTAUTH_KEYS_SIGN_KEY_FILE"),
        ("server.tls_cert", "FRONTAUTH_SERVER_TLS_CERT"),
    ],
)
def test_fifo_setting_stops_startup(tmp_path, setting, flag_or_env):
    """A FIFO would block the open until a writer appears; start-up names it instead."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    args = ["serve", "--port", str(free_port())]
    env = {"FRONTAUTH_SERVER_TLS_KEY": str(fifo)} if setting == "server.tls_cert" else {}
    if flag_or_env is None:
        args += ["--config", str(fifo)]
    else:
        env[flag_or_env] = str(fifo)
    result = run_frontauth(str(tmp_path), *args, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"frontauth: invalid setting {setting} ")
    assert lines[0].endswith(f"{str(fifo)!r} is not a regular file")


@pytest.mark.parametrize("url", ["sqlite:////dev/null", "sqlite:////proc/self/status", "sqlite:///{fifo}"])
def test_sqlite_url_naming_no_database_file_stops_startup(tmp_path, url):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result = run_frontauth(
        str(tmp_path), "serve", "--port", str(free_port()), env={"FRONTAUTH_STORAGE_URL": url.format(fifo=fifo)}
    )
    assert result.returncode == 2
    assert result.stderr.startswith("frontauth: invalid setting storage.url (from environment variable"), result.stderr
    assert "Traceback" not in result.stderr
    # SQLite creates its journal files beside the database; none may appear beside a device or a FIFO.
    leftovers = [path for path in ("/dev/null-journal", "/dev/null-wal", "/dev/null-shm") if os.path.exists(path)]
    assert leftovers == []
    assert sorted(os.listdir(tmp_path)) == ["fifo"]


def test_secret_values_stay_out_of_errors(tmp_path):
    secret_jwk = json.dumps({**PRIVATE, "crv": "P-384"})
    result = run_frontauth(str(tmp_path), "serve", "--port", str(free_port()), env={"JWT_SIGNING_KEY": secret_jwk})
    assert result.returncode == 2
    assert PRIVATE["d"] not in result.stderr


def test_busy_port_stops_startup(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_frontauth(str(tmp_path), "serve", "--port", str(port))
    assert result.returncode == 1
    assert f"frontauth: cannot listen on 127.0.0.1:{port}" in result.stderr
