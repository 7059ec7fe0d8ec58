"""Request bodies with a content coding get the endpoint's own 400, never aiohttp's text or a 5xx.

Requests go out as raw HTTP/1.1 over loopback, so the Content-Encoding header
and the body reach the server exactly as written here.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import typing
import zlib

import attrs
import pytest

from tests.oauth_checks import error_page
from tests.processes import start_frontauth

API_ENDPOINTS = ["/oauth/token", "/oauth/register", "/oauth/revoke", "/oauth/introspect"]
BROWSER_ENDPOINTS = ["/oauth/login", "/oauth/consent"]
GARBAGE = b"\x00not compressed at all"
FORM_BODY = b"grant_type=authorization_code&code=x"
REJECTED = {
    "error": "invalid_request",
    "error_description": "request bodies with a Content-Encoding are not supported; send the body uncompressed",
}

# Content-Encoding value -> body. br and zstd are rejected by aiohttp's parser
# when their optional modules are missing, an unknown coding is passed on
# still encoded, and gzip and deflate are decoded by aiohttp unless turned off.
ENCODED_BODIES: dict[str, bytes] = {
    "br": GARBAGE,
    "zstd": GARBAGE,
    "x-unknown": FORM_BODY,
    "gzip": GARBAGE,
    "deflate": GARBAGE,
    "GZIP": gzip.compress(FORM_BODY),
    "deflate, br": zlib.compress(FORM_BODY),
}
ENCODING_IDS = ["br", "zstd", "unknown", "gzip-corrupt", "deflate-corrupt", "gzip-valid-upper-case", "stacked"]


@attrs.frozen
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> typing.Any:
        return json.loads(self.body)


def _content_type(path: str) -> bytes:
    return b"application/json" if path == "/oauth/register" else b"application/x-www-form-urlencoded"


async def post_raw(host: str, port: int, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> RawResponse:
    """Send one POST as raw HTTP/1.1 with Connection: close, and read the response until the server closes."""
    reader, writer = await asyncio.open_connection(host, port)
    lines = [b"POST " + path.encode() + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    if not any(name.lower() == b"transfer-encoding" for name, _ in headers):
        lines.append(b"Content-Length: %d" % len(body))
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
    await writer.drain()
    try:
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, content = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return RawResponse(int(status_line.split()[1]), parsed, content)


async def post_encoded(http: typing.Any, path: str, encoding: str, body: bytes, **extra: bytes) -> RawResponse:
    headers = [(b"Content-Type", _content_type(path)), (b"Content-Encoding", encoding.encode())]
    headers += [(name.replace("_", "-").encode(), value) for name, value in extra.items()]
    return await post_raw(http.server.host, http.server.port, path, headers, body)


def assert_rejected_as_json(response: RawResponse) -> None:
    assert response.status == 400
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["accept-encoding"] == "identity"
    assert response.json() == REJECTED


@pytest.mark.parametrize("path", API_ENDPOINTS)
@pytest.mark.parametrize(("encoding", "body"), list(ENCODED_BODIES.items()), ids=ENCODING_IDS)
async def test_encoded_body_is_invalid_request(http, path, encoding, body):
    assert_rejected_as_json(await post_encoded(http, path, encoding, body))


@pytest.mark.parametrize("path", BROWSER_ENDPOINTS)
@pytest.mark.parametrize("encoding", ["br", "zstd", "x-unknown", "gzip"])
async def test_encoded_body_gets_error_page(http, path, encoding):
    response = await post_encoded(http, path, encoding, GARBAGE)
    assert response.status == 400
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert error_page(response.body.decode())["error"] == "invalid_request"


async def test_chunked_encoded_body_is_invalid_request(http):
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(GARBAGE), GARBAGE)
    response = await post_encoded(http, "/oauth/token", "br", chunked, Transfer_Encoding=b"chunked")
    assert_rejected_as_json(response)


@pytest.mark.parametrize("encoding", ["identity", ""])
async def test_identity_body_reaches_handler(http, encoding):
    """No coding, spelled as identity or left empty, lets the token endpoint read the form."""
    response = await post_encoded(http, "/oauth/token", encoding, b"grant_type=password")
    assert response.status == 400
    assert response.json()["error"] == "unsupported_grant_type"


async def test_encoded_body_on_unknown_path_not_found(http):
    response = await post_encoded(http, "/oauth/unknown", "br", GARBAGE)
    assert response.status == 404


async def test_served_process_rejects_encoded_body(tmp_path):
    """`frontauth serve` builds its runner from the same app, so its parser leaves br bodies to frontauth."""
    server = start_frontauth(str(tmp_path))
    try:
        for encoding in ("br", "zstd"):
            headers = [(b"Content-Type", b"application/x-www-form-urlencoded"), (b"Content-Encoding", encoding.encode())]
            response = await post_raw("127.0.0.1", server.port, "/oauth/token", headers, GARBAGE)
            assert_rejected_as_json(response)
    finally:
        server.stop()
