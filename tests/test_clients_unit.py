"""Redirect URI matching (OAuth 2.1 §2.3.1, RFC 8252 §7.3) and loopback detection."""

from __future__ import annotations

import pytest

from frontauth.clients import find_redirect_uri, is_loopback_host, redirect_uri_matches
from frontauth.stores import ClientRecord

LOOPBACK = "http://127.0.0.1:33418/callback"
HTTPS = "https://app.example/callback"


@pytest.mark.parametrize(
    ("requested", "registered"),
    [
        pytest.param(LOOPBACK, LOOPBACK, id="loopback-exact"),
        pytest.param("http://127.0.0.1:50123/callback", LOOPBACK, id="loopback-other-port"),
        pytest.param("http://127.0.0.1/callback", LOOPBACK, id="loopback-port-omitted"),
        pytest.param("http://127.0.0.1:1/callback", "http://127.0.0.1/callback", id="loopback-port-added"),
        pytest.param("http://[::1]:50123/callback", "http://[::1]:33418/callback", id="ipv6-loopback-other-port"),
        pytest.param("http://localhost:50123/callback", "http://localhost:33418/callback", id="localhost-other-port"),
        pytest.param("http://127.0.0.1:50123/callback?a=1", "http://127.0.0.1:33418/callback?a=1", id="loopback-same-query"),
        pytest.param(HTTPS, HTTPS, id="https-exact"),
        pytest.param("com.example.app:/callback", "com.example.app:/callback", id="private-scheme-exact"),
    ],
)
def test_redirect_uri_accepted(requested, registered):
    assert redirect_uri_matches(requested, registered)


@pytest.mark.parametrize(
    ("requested", "registered"),
    [
        pytest.param("http://127.0.0.1:33418/other", LOOPBACK, id="loopback-other-path"),
        pytest.param("http://127.0.0.1:50123/other", LOOPBACK, id="loopback-other-port-and-path"),
        pytest.param("http://127.0.0.1:33418/callback/", LOOPBACK, id="loopback-trailing-slash"),
        pytest.param("http://127.0.0.1:33418/callback?x=1", LOOPBACK, id="loopback-extra-query"),
        pytest.param("http://127.0.0.1:50123/callback#x", LOOPBACK, id="loopback-fragment"),
        pytest.param("http://localhost:33418/callback", LOOPBACK, id="localhost-for-ip"),
        pytest.param(LOOPBACK, "http://localhost:33418/callback", id="ip-for-localhost"),
        pytest.param("http://[::1]:33418/callback", LOOPBACK, id="ipv6-for-ipv4"),
        pytest.param("http://127.0.0.2:33418/callback", LOOPBACK, id="other-loopback-address"),
        pytest.param("https://127.0.0.1:33418/callback", LOOPBACK, id="https-for-http"),
        pytest.param("http://user@127.0.0.1:33418/callback", LOOPBACK, id="loopback-user-info"),
        pytest.param("http://127.0.0.1:33418@evil.example/callback", LOOPBACK, id="user-info-trick"),
        pytest.param("http://127.0.0.1:99999/callback", LOOPBACK, id="port-out-of-range"),
        pytest.param("http://127.0.0.1:port/callback", LOOPBACK, id="port-not-a-number"),
        pytest.param("http://[::1/callback", LOOPBACK, id="unclosed-ipv6-bracket"),
        pytest.param("https://app.example:8443/callback", HTTPS, id="https-other-port"),
        pytest.param("https://app.example/callback/", HTTPS, id="https-trailing-slash"),
        pytest.param("https://APP.example/callback", HTTPS, id="https-host-case"),
        pytest.param("https://app.example/Callback", HTTPS, id="https-path-case"),
        pytest.param("https://app.example/callback?x=1", HTTPS, id="https-extra-query"),
        pytest.param("http://app.example:8080/callback", "http://app.example:80/callback", id="http-not-loopback-other-port"),
        pytest.param("http://evil.example:33418/callback", LOOPBACK, id="other-host"),
        pytest.param("", LOOPBACK, id="empty"),
        pytest.param("javascript:alert(1)", LOOPBACK, id="javascript"),
    ],
)
def test_redirect_uri_rejected(requested, registered):
    assert not redirect_uri_matches(requested, registered)


def _client(*redirect_uris: str) -> ClientRecord:
    return ClientRecord(client_id="c", redirect_uris=list(redirect_uris))


def test_omitted_redirect_uri_uses_only_registered():
    assert find_redirect_uri(_client(LOOPBACK), None) == LOOPBACK


def test_omitted_redirect_uri_with_two_registered_rejected():
    assert find_redirect_uri(_client(LOOPBACK, HTTPS), None) is None


def test_found_redirect_uri_keeps_requested_port():
    assert find_redirect_uri(_client(LOOPBACK), "http://127.0.0.1:50123/callback") == "http://127.0.0.1:50123/callback"


def test_second_registered_uri_matched():
    assert find_redirect_uri(_client(LOOPBACK, HTTPS), HTTPS) == HTTPS


def test_unmatched_redirect_uri_not_found():
    assert find_redirect_uri(_client(LOOPBACK, HTTPS), "https://app.example/other") is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        pytest.param("127.0.0.1", True, id="ipv4"),
        pytest.param("127.8.9.10", True, id="ipv4-block"),
        pytest.param("::1", True, id="ipv6"),
        pytest.param("[::1]", True, id="ipv6-bracketed"),
        pytest.param("localhost", True, id="localhost"),
        pytest.param("LOCALHOST", True, id="localhost-upper"),
        pytest.param("localhost.example", False, id="localhost-prefix"),
        pytest.param("128.0.0.1", False, id="public-ipv4"),
        pytest.param("0.0.0.0", False, id="unspecified"),
        pytest.param("", False, id="empty"),
        pytest.param(None, False, id="none"),
    ],
)
def test_loopback_host_detected(host, expected):
    assert is_loopback_host(host) is expected
