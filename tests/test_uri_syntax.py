"""Redirect URI text checks: exact matching and the registration policy patterns."""

from __future__ import annotations

import pytest

from frontauth import uri_syntax
from frontauth.authorization import redirect_origin
from frontauth.clients import redirect_uri_matches

REGISTERED = "http://127.0.0.1/callback"


@pytest.mark.parametrize(
    "requested",
    [
        pytest.param("http://127.0.0.1:44\n44/callback", id="newline-in-port"),
        pytest.param("http://127.0.0.1:4444/call\tback", id="tab-in-path"),
        pytest.param("http://127.0.0.1:4444/call\r\nback", id="crlf-in-path"),
        pytest.param(" http://127.0.0.1:4444/callback", id="leading-space"),
        pytest.param("http://127.0.0.1:4444/callback?", id="empty-query"),
        pytest.param("HTTP://127.0.0.1:4444/callback", id="upper-case-scheme"),
        pytest.param("http://127.0.0.1:0/callback", id="port-zero"),
        pytest.param("http://127.0.0.1:04444/callback", id="leading-zero-port"),
        pytest.param("http://127.0.0.1:99999/callback", id="port-out-of-range"),
        pytest.param("http://x@127.0.0.1:4444/callback", id="userinfo"),
    ],
)
def test_loopback_match_is_exact_but_port(requested):
    assert redirect_uri_matches(requested, REGISTERED) is False


def test_loopback_match_accepts_other_port():
    assert redirect_uri_matches("http://127.0.0.1:4444/callback", REGISTERED) is True


@pytest.mark.parametrize(
    ("uri", "pattern"),
    [
        ("http://127.0.0.1:1@evil.com/x", "http://127.0.0.1:*/*"),
        ("http://localhost:80@attacker.net/cb", "http://localhost:*/*"),
        ("https://evil.com/.example.com/cb", "https://*.example.com/*"),
        ("https://evil.com?.example.com/", "https://*.example.com/*"),
        ("http://app.example.com/cb", "https://*.example.com/*"),
    ],
)
def test_pattern_bypass_is_rejected(uri, pattern):
    assert uri_syntax.matches_pattern(uri, pattern) is False


@pytest.mark.parametrize(
    ("uri", "pattern"),
    [
        ("http://127.0.0.1:5000/callback", "http://127.0.0.1:*/*"),
        ("https://app.example.com/oauth/cb?x=1", "https://*.example.com/*"),
    ],
)
def test_pattern_admits_intended_uri(uri, pattern):
    assert uri_syntax.matches_pattern(uri, pattern) is True


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        pytest.param("https://trusted.example@evil.example/cb", "a redirect URI must not contain user information", id="userinfo"),
        pytest.param("https://a.com; frame-ancestors *; x@evil.example/cb", "a redirect URI contains characters that RFC 3986 does not allow", id="csp-injection"),
        pytest.param("https://a.com/%zz", "a redirect URI contains characters that RFC 3986 does not allow", id="bad-percent"),
    ],
)
def test_problem_names_the_reason(uri, expected):
    assert uri_syntax.problem(uri) == expected


@pytest.mark.parametrize(
    ("uri", "origin"),
    [
        ("https://app.example.com/cb", "https://app.example.com"),
        ("http://127.0.0.1:5000/cb", "http://127.0.0.1:5000"),
        ("http://[::1]:5000/cb", "http://[::1]:5000"),
        ("com.example.app:/cb", "com.example.app:"),
        ("https://a.com;x/cb", "'none'"),
    ],
)
def test_redirect_origin_is_rebuilt(uri, origin):
    assert redirect_origin(uri) == origin


async def test_registration_rejects_userinfo(http):
    response = await http.post(
        "/oauth/register",
        json={"redirect_uris": ["https://trusted-bank.com:443@evil.example/cb"], "token_endpoint_auth_method": "none"},
    )
    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_redirect_uri",
        "error_description": "a redirect URI must not contain user information",
    }
