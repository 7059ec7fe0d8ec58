"""Settings: sources, precedence, environment names and profile defaults."""

from __future__ import annotations

import pytest

from frontauth import config


def test_defaults_serve_local_mode_on_loopback():
    settings = config.load(environ={})
    assert settings.mode == "local"
    assert settings.storage.url == "memory://"
    assert settings.issuer == "http://127.0.0.1:8080"
    assert settings.audiences == ("http://127.0.0.1:8080/mcp",)
    assert settings.access_ttl == 3600
    assert settings.refresh_ttl == 7 * 86400
    assert settings.development_login is True


def test_environment_overrides_file_and_flags_override_environment(tmp_path):
    path = tmp_path / "f.toml"
    path.write_text('[server]\nport = 9001\nhost = "127.0.0.2"\n[storage]\nprefix = "file:"\n')
    settings = config.load(
        str(path),
        environ={"FRONTAUTH_SERVER_PORT": "9002", "FRONTAUTH_STORAGE_PREFIX": "env:"},
        overrides={"server.port": 9003},
    )
    assert settings.server.port == 9003
    assert settings.server.host == "127.0.0.2"
    assert settings.storage.prefix == "env:"
    assert settings.source_of("server.port") == "command line"
    assert settings.source_of("storage.prefix") == "environment variable FRONTAUTH_STORAGE_PREFIX"
    assert settings.source_of("server.host") == f"file {path}"


def test_operator_environment_names_are_honoured():
    settings = config.load(environ={"MACHINE_ID": "m-1", "REDIS_HOST": "10.0.0.5", "REDIS_PORT": "6380"})
    assert settings.server.machine_id == "m-1"
    assert settings.storage.redis_host == "10.0.0.5"
    assert settings.storage.redis_port == 6380


def test_lists_from_environment_accept_commas_and_json():
    commas = config.load(environ={"FRONTAUTH_RESOURCES": "https://a.example/mcp, https://b.example/mcp"})
    assert commas.resources == ("https://a.example/mcp", "https://b.example/mcp")
    as_json = config.load(environ={"FRONTAUTH_RESOURCES": '["https://c.example/mcp"]'})
    assert as_json.resources == ("https://c.example/mcp",)


@pytest.mark.parametrize(
    ("profile", "access", "refresh"),
    [
        ("development", 3600, 7 * 86400),
        ("staging", 1800, 7 * 86400),
        ("production", 900, 30 * 86400),
        ("high-security", 300, 86400),
    ],
)
def test_profile_sets_token_lifetimes(profile, access, refresh):
    environ = {
        "FRONTAUTH_PROFILE": profile,
        "FRONTAUTH_SERVER_SECRET": "s" * 40,
        "JWT_SIGNING_KEY": "{}",
        "FRONTAUTH_LOGIN_USERS_FILE": "users.toml",
    }
    settings = config.load(environ=environ)
    assert settings.access_ttl == access
    assert settings.refresh_ttl == refresh


def test_explicit_lifetime_overrides_profile():
    settings = config.load(environ={"FRONTAUTH_TOKENS_ACCESS_TTL": "120"})
    assert settings.access_ttl == 120


def test_clients_table_is_parsed(tmp_path):
    path = tmp_path / "f.toml"
    path.write_text(
        '[[clients]]\nclient_id = "ide"\nredirect_uris = ["http://127.0.0.1/cb"]\n'
        '[[clients]]\nclient_id = "web"\nredirect_uris = ["https://app.example/cb"]\n'
        'client_secret_hash = "sha256$abc"\n'
    )
    settings = config.load(str(path), environ={})
    assert [c.client_id for c in settings.clients] == ["ide", "web"]
    assert settings.clients[1].client_secret_hash == "sha256$abc"


def test_duplicate_client_id_is_rejected(tmp_path):
    path = tmp_path / "f.toml"
    path.write_text('[[clients]]\nclient_id = "a"\nredirect_uris = ["https://x/cb"]\n' * 2)
    with pytest.raises(config.ConfigError) as raised:
        config.load(str(path), environ={})
    assert str(raised.value) == f"invalid setting clients[1].client_id (from file {path}): duplicate client_id 'a'"


def test_secret_settings_are_hidden_from_repr():
    settings = config.load(environ={"FRONTAUTH_SERVER_SECRET": "top-secret-value-" * 3, "JWT_SIGNING_KEY": '{"d": "private"}'})
    assert "top-secret-value" not in repr(settings)
    assert "private" not in repr(settings)


def test_every_setting_is_documented_in_readme():
    import pathlib

    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    missing = [path for path in config.setting_paths() if f"`{path}`" not in readme]
    assert missing == []


def test_public_url_with_userinfo_is_rejected():
    with pytest.raises(config.ConfigError) as raised:
        config.load(environ={"FRONTAUTH_PUBLIC_URL": "https://user@auth.example.com"})
    assert str(raised.value) == (
        "invalid setting public_url (from environment variable FRONTAUTH_PUBLIC_URL): "
        "must not carry a user name or password, got 'https://***@auth.example.com'"
    )


@pytest.mark.parametrize(
    ("environ", "setting"),
    [
        ({"FRONTAUTH_PUBLIC_URL": "http://u:PWSECRET1@127.0.0.1:1"}, "public_url"),
        ({"FRONTAUTH_RESOURCES": "https://u:PWSECRET1@mcp.example.com/mcp"}, "resources[0]"),
        ({"FRONTAUTH_MODE": "transparent", "IDP_PROVIDER_URL": "https://u:PWSECRET1@idp.example.com"},
         "upstream.provider"),
        ({"FRONTAUTH_STORAGE_URL": "//u:PWSECRET1@redis.example.com"}, "storage.url"),
    ],
    ids=["public-url", "resource", "upstream-provider", "storage-url-without-scheme"],
)
def test_url_password_is_redacted_in_errors(environ, setting):
    with pytest.raises(config.ConfigError) as raised:
        config.load(environ=environ)
    assert raised.value.setting == setting
    assert "PWSECRET1" not in str(raised.value)
    assert "***@" in str(raised.value)


def test_redact_userinfo_keeps_other_text():
    text = "got 'http://u:p@ss@host:1/a@b', mail x@y and https://host/p@q"
    assert config.redact_userinfo(text) == "got 'http://***@host:1/a@b', mail x@y and https://host/p@q"


def test_template_dir_file_is_rejected(tmp_path):
    regular = tmp_path / "base.html"
    regular.write_text("")
    with pytest.raises(config.ConfigError) as raised:
        config.load(environ={"FRONTAUTH_PAGES_TEMPLATE_DIR": str(regular)})
    assert str(raised.value).endswith(f": {str(regular)!r} is not a folder")
