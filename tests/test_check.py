"""`frontauth check`: configuration audits, the production example, and probes of running servers."""

from __future__ import annotations

import json
import os
import pathlib
import time
import typing

import pytest

from frontauth import check, config, keys, users
from frontauth.check_files import check_files
from tests.live_client import start_https_frontauth
from tests.processes import free_port, run_frontauth, start_frontauth
from tests.tls_files import TlsFiles, make_tls_files

ROOT = pathlib.Path(__file__).parent.parent
PRODUCTION_EXAMPLE = ROOT / "docs" / "production.toml"
ITEMS = [
    "profile", "files", "persistent storage", "storage TLS", "signing key", "server secret", "HTTPS public URL",
    "PKCE S256 only", "refresh rotation", "audience", "MACHINE_ID", "rate limiting", "monitoring", "key age",
    "published JWKS", "client registration", "development sign-in", "consent", "token lifetimes",
]
PROBES = ["metadata", "served PKCE", "security headers", "served JWKS", "resource metadata", "bogus code", "plain HTTP"]


def signing_key(age_days: float = 1.0, with_iat: bool = True) -> str:
    jwk: dict[str, typing.Any] = dict(keys.generate("ES256", "k-check"))
    if with_iat:
        jwk["iat"] = int(time.time() - age_days * 86400)
    return json.dumps(jwk)


def production_env(**extra: str) -> dict[str, str]:
    """Secrets for docs/production.toml, as an operator would pass them."""
    env = {
        "JWT_SIGNING_KEY": signing_key(),
        "FRONTAUTH_SERVER_SECRET": "production-secret-" + "x" * 32,
        "MACHINE_ID": "auth-eu-1",
    }
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("check-tls"), "127.0.0.1")


@pytest.fixture(scope="module")
def production_paths(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles) -> dict[str, str]:
    """Files in place of the ones docs/production.toml names under /etc/frontauth, as environment overrides."""
    users_file = tmp_path_factory.mktemp("check-users") / "users.toml"
    users.add_user(str(users_file), "alice", "correct horse battery staple")
    return {
        "FRONTAUTH_SERVER_TLS_CERT": tls_files.server_cert,
        "FRONTAUTH_SERVER_TLS_KEY": tls_files.server_key,
        "FRONTAUTH_STORAGE_TLS_CA": tls_files.ca,
        "FRONTAUTH_LOGIN_USERS_FILE": str(users_file),
    }


def audit(**environ: str) -> dict[str, check.Finding]:
    """Audit docs/production.toml with the production secrets and ``environ`` on top."""
    settings = config.load(str(PRODUCTION_EXAMPLE), environ=production_env(**environ))
    return {finding.item: finding for finding in check.audit_settings(settings)}


# --- the command on whole configurations


def test_production_example_passes(tmp_path: typing.Any, production_paths: dict[str, str]) -> None:
    """docs/production.toml with its secrets in the environment and its files in place: every item passes."""
    result = run_frontauth(
        str(tmp_path), "check", "--config", str(PRODUCTION_EXAMPLE), env=production_env(**production_paths)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == f"check: {len(ITEMS)} pass, 0 warn, 0 fail"
    assert [line.split()[0] for line in lines[:-1]] == ["PASS"] * len(ITEMS)
    users_text = pathlib.Path(production_paths["FRONTAUTH_LOGIN_USERS_FILE"]).read_text()
    password_hash = users_text.split('password_hash = "')[1].split('"')[0]
    assert password_hash not in result.stdout


def test_production_example_missing_files_fails(tmp_path: typing.Any) -> None:
    """The files docs/production.toml names under /etc/frontauth are missing here: one failure names each."""
    result = run_frontauth(str(tmp_path), "check", "--config", str(PRODUCTION_EXAMPLE), "--json", env=production_env())
    assert result.returncode == 1
    files = {finding["item"]: finding for finding in json.loads(result.stdout)["findings"]}["files"]
    assert files["status"] == "fail"
    assert files["reason"] == (
        "server.tls_cert '/etc/frontauth/tls/fullchain.pem': not found; "
        "server.tls_key '/etc/frontauth/tls/privkey.pem': not found; "
        "storage.tls_ca '/etc/frontauth/redis-ca.pem': not found; "
        "login.users_file '/etc/frontauth/users.toml': not found"
    )
    assert files["fix"] == "server.tls_cert, server.tls_key, storage.tls_ca, login.users_file"


def test_development_configuration_fails(tmp_path: typing.Any) -> None:
    """With no configuration, check lists the failures with their fixes and exits 1."""
    result = run_frontauth(str(tmp_path), "check")
    assert result.returncode == 1
    output = result.stdout
    for item, fix in [
        ("profile", "profile"),
        ("persistent storage", "storage.url"),
        ("signing key", "keys.sign_key (JWT_SIGNING_KEY)"),
        ("server secret", "server.secret (FRONTAUTH_SERVER_SECRET)"),
        ("HTTPS public URL", "public_url"),
        ("audience", "resources"),
        ("development sign-in", "login.users_file or login.authenticate"),
    ]:
        assert f"FAIL  {item}" in output
        assert f"fix: {fix}" in output
    assert output.splitlines()[-1] == "check: 10 pass, 2 warn, 7 fail"
    assert "PASS  files                no setting names a file" in output
    # The audit writes nothing: no development key or secret appears on disk.
    assert not (tmp_path / ".frontauth").exists()


def test_json_output_lists_every_item(tmp_path: typing.Any, production_paths: dict[str, str]) -> None:
    result = run_frontauth(
        str(tmp_path), "check", "--config", str(PRODUCTION_EXAMPLE), "--json", env=production_env(**production_paths)
    )
    document = json.loads(result.stdout)
    assert document["ok"] is True
    assert document["summary"] == {"pass": len(ITEMS), "warn": 0, "fail": 0}
    assert [finding["item"] for finding in document["findings"]] == ITEMS
    assert set(document["findings"][0]) == {"item", "status", "reason", "fix"}


def test_invalid_configuration_is_one_failure(tmp_path: typing.Any) -> None:
    """A configuration that does not load is reported as a failure naming the setting."""
    result = run_frontauth(str(tmp_path), "check", "--config", str(PRODUCTION_EXAMPLE), "--json")
    assert result.returncode == 1
    findings = json.loads(result.stdout)["findings"]
    assert findings[0]["item"] == "configuration"
    assert findings[0]["status"] == "fail"
    assert findings[0]["fix"] == "server.secret"


# --- single audits


@pytest.mark.parametrize(
    ("environ", "item", "status", "fix"),
    [
        ({"FRONTAUTH_STORAGE_URL": "redis://redis.internal:6379/0"}, "storage TLS", "fail", "storage.url"),
        ({"FRONTAUTH_STORAGE_URL": "redis+cluster://10.0.0.1:7000,10.0.0.2:7000"}, "storage TLS", "fail", "storage.url"),
        ({"FRONTAUTH_STORAGE_URL": "redis://127.0.0.1:6379/0"}, "storage TLS", "warn", "storage.url"),
        ({"FRONTAUTH_STORAGE_TLS_VERIFY_HOSTNAME": "false"}, "storage TLS", "warn", "storage.tls_verify_hostname"),
        ({"FRONTAUTH_STORAGE_URL": "sqlite:////var/lib/frontauth/auth.db"}, "persistent storage", "warn", "storage.url"),
        ({"FRONTAUTH_STORAGE_URL": "memory://"}, "persistent storage", "fail", "storage.url"),
        ({"FRONTAUTH_STORAGE_URL": "memory://"}, "MACHINE_ID", "pass", ""),
        ({"FRONTAUTH_STORAGE_URL": "sqlite:////var/lib/frontauth/auth.db", "MACHINE_ID": ""}, "MACHINE_ID", "pass", ""),
        ({"FRONTAUTH_RATELIMIT_ENABLED": "false"}, "rate limiting", "warn", "ratelimit.enabled"),
        ({"FRONTAUTH_RATELIMIT_ENDPOINTS": "register,authorize"}, "rate limiting", "warn", "ratelimit.endpoints"),
        ({"FRONTAUTH_METRICS_ENABLED": "false"}, "monitoring", "warn", "metrics.enabled"),
        ({"FRONTAUTH_CONSENT_ENABLED": "false"}, "consent", "warn", "consent.enabled"),
        ({"FRONTAUTH_TOKENS_ACCESS_TTL": "3600"}, "token lifetimes", "warn", "tokens.access_ttl, tokens.refresh_ttl"),
        ({"FRONTAUTH_TOKENS_REFRESH_TTL": str(90 * 86400)}, "token lifetimes", "warn", "tokens.access_ttl, tokens.refresh_ttl"),
        ({"FRONTAUTH_REGISTRATION_ALLOWED_REDIRECT_URIS": "[]"}, "client registration", "warn",
         "registration.initial_access_token or registration.allowed_redirect_uris"),
        ({"FRONTAUTH_REGISTRATION_ALLOWED_REDIRECT_URIS": "[]", "FRONTAUTH_REGISTRATION_ENABLED": "false"},
         "client registration", "pass", ""),
        ({"FRONTAUTH_REGISTRATION_ALLOWED_REDIRECT_URIS": "[]", "FRONTAUTH_REGISTRATION_INITIAL_ACCESS_TOKEN": "t" * 32},
         "client registration", "pass", ""),
        ({"FRONTAUTH_RESOURCES": "[]"}, "audience", "fail", "resources"),
        ({"JWT_SIGNING_KEY": signing_key(age_days=120)}, "key age", "warn",
         "keys.sign_key (rotate; keep the old public half in keys.previous)"),
        ({"JWT_SIGNING_KEY": signing_key(with_iat=False)}, "key age", "warn", "keys.sign_key"),
        ({"FRONTAUTH_KEYS_ROTATION_DAYS": "30", "JWT_SIGNING_KEY": signing_key(age_days=45)}, "key age", "warn",
         "keys.sign_key (rotate; keep the old public half in keys.previous)"),
    ],
    ids=[
        "plain-redis-remote", "plain-cluster-remote", "plain-redis-loopback", "unverified-hostname", "sqlite",
        "memory", "memory-needs-no-machine-id", "sqlite-needs-no-machine-id", "ratelimit-off", "ratelimit-missing-token", "metrics-off",
        "consent-off", "long-access", "long-refresh", "open-registration", "registration-off",
        "registration-token", "no-resources", "old-key", "key-without-iat", "shorter-rotation",
    ],
)
def test_audit_item(environ: dict[str, str], item: str, status: str, fix: str) -> None:
    finding = audit(**environ)[item]
    assert (finding.status, finding.fix) == (status, fix), finding.reason


def test_shared_storage_without_machine_id_warns() -> None:
    environ = production_env()
    del environ["MACHINE_ID"]
    finding = check.check_machine_id(config.load(str(PRODUCTION_EXAMPLE), environ=environ))
    assert finding.status == "warn"
    assert finding.fix == "server.machine_id (MACHINE_ID)"


def test_private_member_in_previous_key_fails() -> None:
    leaked = json.dumps(dict(keys.generate("ES256", "old-key")))
    findings = audit(FRONTAUTH_KEYS_PREVIOUS=json.dumps([json.loads(leaked)]))
    assert findings["published JWKS"].status == "fail"
    assert "keys.previous[0] (d)" in findings["published JWKS"].reason
    assert findings["signing key"].status == "fail"


def test_public_previous_key_passes() -> None:
    previous = keys.public_half(dict(keys.generate("ES256", "old-key")))
    findings = audit(FRONTAUTH_KEYS_PREVIOUS=json.dumps([previous]))
    assert findings["published JWKS"].status == "pass"
    assert "1 previous key(s)" in findings["published JWKS"].reason


def test_keys_generate_records_iat(tmp_path: typing.Any) -> None:
    """Keys from `frontauth keys generate` carry iat, so check can date them."""
    result = run_frontauth(str(tmp_path), "keys", "generate")
    private = json.loads(result.stdout)["private"]
    assert abs(private["iat"] - time.time()) < 60
    findings = audit(JWT_SIGNING_KEY=json.dumps(private))
    assert findings["key age"].status == "pass"
    assert findings["signing key"].status == "pass"


def test_files_pass_lists_settings(production_paths: dict[str, str], tmp_path: typing.Any) -> None:
    finding = audit(**production_paths, FRONTAUTH_PAGES_TEMPLATE_DIR=str(tmp_path))["files"]
    assert finding.status == "pass"
    assert finding.reason == (
        "found and readable: server.tls_cert, server.tls_key, storage.tls_ca, login.users_file, pages.template_dir"
    )


def test_file_setting_naming_folder_fails(production_paths: dict[str, str], tmp_path: typing.Any) -> None:
    finding = audit(**{**production_paths, "FRONTAUTH_LOGIN_USERS_FILE": str(tmp_path)})["files"]
    assert finding.status == "fail"
    assert finding.reason == f"login.users_file {str(tmp_path)!r}: not a regular file"
    assert finding.fix == "login.users_file"


def test_missing_sign_key_file_fails(production_paths: dict[str, str], tmp_path: typing.Any) -> None:
    missing = str(tmp_path / "signing-key.json")
    environ = production_env(**production_paths, FRONTAUTH_KEYS_SIGN_KEY_FILE=missing)
    del environ["JWT_SIGNING_KEY"]
    finding = check_files(config.load(str(PRODUCTION_EXAMPLE), environ=environ))
    assert finding.status == "fail"
    assert finding.reason == f"keys.sign_key_file {missing!r}: not found"
    assert finding.fix == "keys.sign_key_file"


def test_sqlite_folder_missing_fails(production_paths: dict[str, str], tmp_path: typing.Any) -> None:
    database = tmp_path / "absent" / "auth.db"
    finding = audit(**production_paths, FRONTAUTH_STORAGE_URL=f"sqlite:///{database}")["files"]
    assert finding.status == "fail"
    assert finding.fix == "storage.url"
    assert f"folder {database.parent} does not exist" in finding.reason


def test_sqlite_file_that_is_not_a_database_fails(production_paths: dict[str, str], tmp_path: typing.Any) -> None:
    text_file = tmp_path / "notes.db"
    text_file.write_text("not a database\n")
    finding = audit(**production_paths, FRONTAUTH_STORAGE_URL=f"sqlite:///{text_file}")["files"]
    assert finding.status == "fail"
    assert finding.reason == f"storage.url: {text_file} is not a SQLite database file"
    assert finding.fix == "storage.url"


def test_sqlite_empty_file_passes(production_paths: dict[str, str], tmp_path: typing.Any) -> None:
    """SQLite turns an empty file into a new database."""
    empty = tmp_path / "auth.db"
    empty.write_bytes(b"")
    assert audit(**production_paths, FRONTAUTH_STORAGE_URL=f"sqlite:///{empty}")["files"].status == "pass"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("sqlite:////dev/null", "/dev/null is on a virtual file system; name a file on a disk"),
        ("sqlite:////proc/version", "/proc/version is on a virtual file system; name a file on a disk"),
        ("sqlite:///{fifo}", "'{fifo}' is not a regular file; name a SQLite database file"),
        ("sqlite:///{tmp}/auth%00x.db", "the database path contains a NUL character (%00)"),
    ],
    ids=["dev-null", "proc", "fifo", "nul"],
)
def test_sqlite_url_naming_no_database_file_fails(tmp_path: pathlib.Path, url: str, reason: str) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    env = {"FRONTAUTH_STORAGE_URL": url.format(fifo=fifo, tmp=tmp_path)}
    result = run_frontauth(str(tmp_path), "check", "--json", env=env)
    assert result.returncode == 1
    findings = json.loads(result.stdout)["findings"]
    assert findings[0]["item"] == "configuration"
    assert findings[0]["fix"] == "storage.url"
    assert findings[0]["reason"].endswith(reason.format(fifo=fifo))
    assert not os.path.exists("/dev/null-journal")


@pytest.mark.parametrize("setting", ["--config", "keys.sign_key_file", "login.users_file", "server.tls_cert"])
def test_fifo_setting_fails_without_blocking(tmp_path: pathlib.Path, setting: str) -> None:
    """Opening a FIFO would wait for a writer; check names it instead."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    if setting == "--config":
        args, env = ["--config", str(fifo)], {}
    else:
        env = {"FRONTAUTH_" + setting.replace(".", "_").upper(): str(fifo)}
    result = run_frontauth(str(tmp_path), "check", "--json", *(args if setting == "--config" else []), env=env)
    assert result.returncode == 1
    finding = json.loads(result.stdout)["findings"][0]
    assert finding["item"] == "configuration"
    assert finding["fix"] == setting
    assert finding["reason"].endswith(f"{str(fifo)!r} is not a regular file")


def test_config_not_utf8_fails_naming_the_file(tmp_path: pathlib.Path) -> None:
    config_file = tmp_path / "frontauth.toml"
    config_file.write_bytes(b"\xff\xfe garbage\n")
    result = run_frontauth(str(tmp_path), "check", "--config", str(config_file))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stdout.splitlines()[0] == (
        f"FAIL  configuration  invalid setting --config (from command line): cannot read {str(config_file)!r}: "
        "not UTF-8 text (invalid byte at offset 0)"
    )


# A write-only sysctl: even root cannot open it for reading, while root opens a mode-000 file.
WRITE_ONLY_SYSCTL = pathlib.Path("/proc/sys/vm/compact_memory")


def unreadable_file(directory: pathlib.Path) -> pathlib.Path:
    """Return a regular file that this process cannot open for reading."""
    if os.geteuid() != 0:
        locked = directory / "users.toml"
        locked.write_text("")
        locked.chmod(0)
        return locked
    if not WRITE_ONLY_SYSCTL.is_file():
        pytest.skip(f"running as root without {WRITE_ONLY_SYSCTL}, so no file here is unreadable")
    return WRITE_ONLY_SYSCTL


def test_unreadable_file_fails(production_paths: dict[str, str], tmp_path: pathlib.Path) -> None:
    locked = unreadable_file(tmp_path)
    finding = audit(**{**production_paths, "FRONTAUTH_LOGIN_USERS_FILE": str(locked)})["files"]
    assert finding.status == "fail"
    assert finding.reason == f"login.users_file {str(locked)!r}: cannot be read (Permission denied)"
    assert finding.fix == "login.users_file"


# --- probes of running servers


def probe_findings(result: typing.Any) -> dict[str, dict[str, str]]:
    return {finding["item"]: finding for finding in json.loads(result.stdout)["findings"] if finding["item"] in PROBES}


def test_url_probes_pass_on_https_server(tmp_path: typing.Any, tls_files: TlsFiles) -> None:
    """Against frontauth over TLS with a public client: every probe passes."""
    config_file = tmp_path / "frontauth.toml"
    config_file.write_text('[[clients]]\nclient_id = "desktop"\nredirect_uris = ["http://127.0.0.1/callback"]\n')
    server = start_https_frontauth(
        str(tmp_path), tls_files.server_cert, tls_files.server_key, tls_files.ca, config_file=str(config_file)
    )
    url = f"https://127.0.0.1:{server.port}"
    env = {"FRONTAUTH_SERVER_TLS_CERT": tls_files.server_cert, "FRONTAUTH_SERVER_TLS_KEY": tls_files.server_key,
           "FRONTAUTH_SERVER_PORT": str(server.port)}
    try:
        result = run_frontauth(
            str(tmp_path), "check", "--config", str(config_file), "--url", url, "--ca-file", tls_files.ca, "--json", env=env
        )
    finally:
        server.stop()
    findings = probe_findings(result)
    assert list(findings) == PROBES
    assert {item: finding["status"] for item, finding in findings.items()} == {item: "pass" for item in PROBES}
    assert findings["bogus code"]["reason"] == "refused with 400 invalid_grant"
    assert "HSTS" in findings["security headers"]["reason"]
    assert findings["plain HTTP"]["reason"].startswith(f"http://127.0.0.1:{server.port}/.well-known/oauth-authorization-server refused")
    # The development configuration itself still fails the audit.
    assert result.returncode == 1


def test_url_probes_without_config_warn_about_client(tmp_path: typing.Any, tls_files: TlsFiles) -> None:
    """Without --config the issuer is the probed URL, and the code probe stops at client authentication."""
    server = start_https_frontauth(str(tmp_path), tls_files.server_cert, tls_files.server_key, tls_files.ca)
    try:
        result = run_frontauth(
            str(tmp_path), "check", "--url", f"https://127.0.0.1:{server.port}/", "--ca-file", tls_files.ca, "--json"
        )
    finally:
        server.stop()
    findings = probe_findings(result)
    assert [finding["item"] for finding in json.loads(result.stdout)["findings"]] == PROBES
    assert result.returncode == 0
    assert findings["bogus code"]["status"] == "warn"
    assert findings["bogus code"]["fix"] == "--client-id"
    assert findings["metadata"]["status"] == "pass"


def test_probes_fail_plain_http_wrong_issuer(tmp_path: typing.Any) -> None:
    """A plain-HTTP server whose issuer is not the probed URL fails the metadata and plain HTTP probes."""
    server = start_frontauth(str(tmp_path), env={"FRONTAUTH_PUBLIC_URL": "http://127.0.0.1:1"})
    try:
        result = run_frontauth(str(tmp_path), "check", "--url", server.url, "--json")
    finally:
        server.stop()
    document = json.loads(result.stdout)
    findings = probe_findings(result)
    assert result.returncode == 1
    assert findings["metadata"]["status"] == "fail"
    assert findings["metadata"]["reason"] == f"issuer is 'http://127.0.0.1:1', expected '{server.url}'"
    assert findings["plain HTTP"]["status"] == "fail"
    assert findings["security headers"]["status"] == "pass"
    assert document["ok"] is False


def test_url_password_stays_out_of_findings(tmp_path: typing.Any) -> None:
    """--url with a user name and password: the text and JSON findings show the URL without them."""
    server = start_frontauth(str(tmp_path))
    url = f"http://admin:HUNTER2SECRET@127.0.0.1:{server.port}"
    try:
        text = run_frontauth(str(tmp_path), "check", "--url", url)
        document = run_frontauth(str(tmp_path), "check", "--url", url, "--json")
    finally:
        server.stop()
    for result in (text, document):
        assert "HUNTER2SECRET" not in result.stdout + result.stderr
    findings = probe_findings(document)
    assert findings["metadata"]["reason"] == (
        f"issuer is '{server.url}', expected 'http://***@127.0.0.1:{server.port}'"
    )
    assert findings["plain HTTP"]["reason"] == f"http://***@127.0.0.1:{server.port} is served over plain HTTP"
    assert f"http://***@127.0.0.1:{server.port} is served over plain HTTP" in text.stdout


def test_configuration_password_stays_out_of_findings(tmp_path: typing.Any) -> None:
    result = run_frontauth(str(tmp_path), "check", env={"FRONTAUTH_PUBLIC_URL": "http://u:PWSECRET1@127.0.0.1:1"})
    assert "PWSECRET1" not in result.stdout + result.stderr
    assert "got 'http://***@127.0.0.1:1'" in result.stdout


def test_url_probe_of_closed_port_fails(tmp_path: typing.Any) -> None:
    from tests.processes import free_port

    result = run_frontauth(str(tmp_path), "check", "--url", f"http://127.0.0.1:{free_port()}", "--json")
    findings = probe_findings(result)
    assert findings["metadata"]["status"] == "fail"
    assert findings["metadata"]["reason"].startswith("GET /.well-known/oauth-authorization-server failed: ")
    assert result.returncode == 1


def test_url_probes_pass_on_production_example(
    tmp_path: typing.Any, tls_files: TlsFiles, production_paths: dict[str, str]
) -> None:
    """docs/production.toml served over TLS: its resource is on another origin, and every probe passes.

    Only what this machine lacks is replaced: the files under /etc/frontauth,
    Redis (memory storage), and the listen and metrics addresses (loopback). A
    public client is added so that the code probe reaches the code check.
    """
    config_file = tmp_path / "production.toml"
    config_file.write_text(
        PRODUCTION_EXAMPLE.read_text() + '\n[[clients]]\nclient_id = "desktop"\nredirect_uris = ["http://127.0.0.1/callback"]\n'
    )
    env = production_env(
        **production_paths,
        FRONTAUTH_SERVER_HOST="127.0.0.1",
        FRONTAUTH_STORAGE_URL="memory://",
        FRONTAUTH_METRICS_HOST="127.0.0.1",
        FRONTAUTH_METRICS_PORT=str(free_port()),
    )
    server = start_https_frontauth(
        str(tmp_path), tls_files.server_cert, tls_files.server_key, tls_files.ca, config_file=str(config_file), env=env
    )
    try:
        result = run_frontauth(
            str(tmp_path), "check", "--config", str(config_file), "--url", f"https://127.0.0.1:{server.port}",
            "--ca-file", tls_files.ca, "--json", env=env,
        )
    finally:
        server.stop()
    findings = probe_findings(result)
    assert {item: finding["status"] for item, finding in findings.items()} == {item: "pass" for item in PROBES}
    assert findings["resource metadata"]["reason"] == (
        "no resource on https://auth.example.com, and the root answers 404; "
        "resources on other origins publish their own metadata: https://mcp.example.com/mcp"
    )


async def test_probe_rejects_root_claiming_other_origin(aiohttp_server: typing.Any) -> None:
    """A root document naming a resource on another origin fails the probe (RFC 9728 section 3.3)."""
    from aiohttp import web

    from frontauth.check_probes import probe

    async def claim_other_origin(request: web.Request) -> web.Response:
        issuer = f"http://127.0.0.1:{request.url.port}"
        return web.json_response({"resource": "https://mcp.example.com/mcp", "authorization_servers": [issuer]})

    async def metadata(request: web.Request) -> web.Response:
        issuer = f"http://127.0.0.1:{request.url.port}"
        return web.json_response({"issuer": issuer, "jwks_uri": f"{issuer}/jwks", "code_challenge_methods_supported": ["S256"]})

    app = web.Application()
    app.router.add_get("/.well-known/oauth-protected-resource", claim_other_origin)
    app.router.add_get("/.well-known/oauth-authorization-server", metadata)
    server = await aiohttp_server(app)
    base_url = f"http://127.0.0.1:{server.port}"
    findings = {finding.item: finding for finding in await probe(base_url, None)}
    assert findings["resource metadata"].status == "fail"
    assert findings["resource metadata"].reason == (
        "GET /.well-known/oauth-protected-resource names resource 'https://mcp.example.com/mcp', which is not on "
        f"{base_url}, so RFC 9728 section 3.3 clients discard it"
    )


DEEP_JSON = b"[" * 100000 + b"]" * 100000


async def serve_probe_target(aiohttp_server: typing.Any, body_of: typing.Callable[[], typing.Any]) -> str:
    """Serve valid metadata whose JWKS, resource metadata and token endpoint send ``body_of()``; return the URL."""
    from aiohttp import web

    async def metadata(request: web.Request) -> web.Response:
        issuer = f"http://127.0.0.1:{request.url.port}"
        return web.json_response({"issuer": issuer, "jwks_uri": f"{issuer}/jwks", "token_endpoint": f"{issuer}/token",
                                  "code_challenge_methods_supported": ["S256"]})

    async def other(request: web.Request) -> web.StreamResponse:
        return await body_of(request)

    app = web.Application()
    app.router.add_get("/.well-known/oauth-authorization-server", metadata)
    app.router.add_get("/jwks", other)
    app.router.add_get("/.well-known/oauth-protected-resource", other)
    app.router.add_post("/token", other)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}"


async def test_probe_deeply_nested_json_fails(aiohttp_server: typing.Any) -> None:
    from aiohttp import web

    from frontauth.check_probes import probe

    async def deep(request: web.Request) -> web.Response:
        return web.Response(body=DEEP_JSON, content_type="application/json")

    base_url = await serve_probe_target(aiohttp_server, deep)
    findings = {finding.item: finding for finding in await probe(base_url, None)}
    assert findings["served JWKS"].status == "fail"
    assert findings["served JWKS"].reason == f"GET {base_url}/jwks did not return a JSON object"
    assert findings["resource metadata"].status == "fail"
    assert findings["resource metadata"].reason.endswith("is not a JSON object")
    assert findings["bogus code"].status == "fail"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_probe_body_over_limit_fails(aiohttp_server: typing.Any, chunked: bool) -> None:
    from aiohttp import web

    from frontauth.check_probes import MAX_BODY, probe

    async def large(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = 2 * MAX_BODY
        await response.prepare(request)
        for _ in range(32):
            await response.write(b" " * (MAX_BODY // 16))
        await response.write_eof()
        return response

    base_url = await serve_probe_target(aiohttp_server, large)
    findings = {finding.item: finding for finding in await probe(base_url, None)}
    too_large = f"BodyTooLarge: the body is over {MAX_BODY} bytes"
    assert findings["served JWKS"].status == "fail"
    assert findings["served JWKS"].reason == f"GET {base_url}/jwks failed: {too_large}"
    assert findings["resource metadata"].status == "fail"
    assert findings["resource metadata"].reason == f"GET of the resource metadata failed: {too_large}"
    assert findings["bogus code"].status == "fail"
    assert findings["bogus code"].reason == f"token endpoint request failed: {too_large}"


@pytest.mark.parametrize(
    ("toml", "status"),
    [
        ('mode = "public"\npublic_url = "https://mcp.example.com"\nresources = ["https://mcp.example.com/mcp"]\n', "pass"),
        ('mode = "public"\npublic_url = "https://auth.example.com"\nresources = ["https://mcp.example.com/mcp"]\n', "warn"),
        ('mode = "transparent"\npublic_url = "https://mcp.example.com"\n[upstream]\nprovider = "https://idp.example"\n'
         'expected_audience = "https://other.example/mcp"\n', "warn"),
        ('mode = "transparent"\npublic_url = "https://mcp.example.com"\n[upstream]\nprovider = "https://idp.example"\n',
         "pass"),
    ],
)
def test_resource_origin_audit(tmp_path: pathlib.Path, toml: str, status: str) -> None:
    path = tmp_path / "frontauth.toml"
    path.write_text(toml)
    findings = {finding.item: finding for finding in check.audit_settings(config.load(str(path), environ={}))}
    assert findings["resource origin"].status == status
