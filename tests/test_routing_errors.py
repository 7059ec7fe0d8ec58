"""Wrong methods and unknown paths on the OAuth endpoints get the endpoint's own error form.

API endpoints return JSON with no-store, browser endpoints the error page,
instead of aiohttp's plain-text 404 and 405.
"""

from __future__ import annotations

import pytest

API_ENDPOINTS = ["/oauth/token", "/oauth/register", "/oauth/revoke", "/oauth/introspect"]


@pytest.mark.parametrize("method", ["GET", "PUT"])
@pytest.mark.parametrize("path", API_ENDPOINTS)
async def test_wrong_method_on_api_is_json(http, path, method):
    response = await http.request(method, path)
    assert response.status == 405
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    # RFC 9110 §15.5.6: a 405 names the methods the resource supports.
    assert response.headers["Allow"] == "POST"
    body = await response.json()
    assert body["error"] == "invalid_request"
    assert body["error_description"] == "this endpoint accepts POST only"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/oauth/authorize", "GET, HEAD"),
        ("PUT", "/oauth/login", "GET, HEAD, POST"),
        ("PUT", "/oauth/consent", "GET, HEAD, POST"),
    ],
)
async def test_wrong_method_on_browser_path_is_page(http, method, path, allow):
    response = await http.request(method, path)
    assert response.status == 405
    assert response.content_type == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Allow"] == allow
    assert "invalid_request" in await response.text()


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/oauth-authorization-server/x",
        "/.well-known/unknown",
        "/oauth/unknown",
        "/x/.well-known/openid-configuration",
        "/oauth",
        "/.well-known",
    ],
)
async def test_unknown_protocol_path_is_json_404(http, path):
    response = await http.get(path)
    assert response.status == 404
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert body["error"] == "invalid_request"
    assert body["error_description"] == "no endpoint or document at this path"


async def test_unknown_resource_metadata_is_not_cached(http):
    response = await http.get("/.well-known/oauth-protected-resource/other")
    assert response.status == 404
    assert response.headers["Cache-Control"] == "no-store"
