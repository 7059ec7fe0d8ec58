"""Request bodies the server cannot decode get a 400, never a 5xx."""

from __future__ import annotations

import pytest

ENDPOINTS = ["/oauth/token", "/oauth/register", "/oauth/revoke", "/oauth/introspect"]
GARBAGE = b"\x00not compressed at all"


def _content_type(path: str) -> str:
    return "application/json" if path == "/oauth/register" else "application/x-www-form-urlencoded"


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_corrupt_compressed_body_is_invalid_request(http, path, encoding):
    headers = {"Content-Encoding": encoding, "Content-Type": _content_type(path)}
    response = await http.post(path, data=GARBAGE, headers=headers)
    assert response.status == 400
    assert response.headers["Cache-Control"] == "no-store"
    assert await response.json() == {"error": "invalid_request", "error_description": "the request body cannot be decoded"}


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("encoding", ["br", "zstd"])
async def test_unsupported_encoding_is_bad_request(http, path, encoding):
    # NOTE: aiohttp's HTTP parser rejects these before any handler or
    # middleware runs, so the 400 is aiohttp's plain-text one.
    headers = {"Content-Encoding": encoding, "Content-Type": _content_type(path)}
    response = await http.post(path, data=GARBAGE, headers=headers)
    assert response.status == 400
