"""Odd requests for the checks that no input makes an endpoint respond with 5xx.

Requests go out as raw HTTP/1.1 bytes over a loopback socket to the test
server, so invalid percent-encoding, invalid UTF-8 and malformed headers reach
frontauth unchanged. An HTTP client library would normalize or reject them.
Each endpoint's test builds its requests with ``form_requests`` or
``query_requests``, grouped by kind, and asserts that ``server_errors`` finds
none.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import typing
import urllib.parse

import attrs
from aiohttp.test_utils import TestClient

FORM = b"application/x-www-form-urlencoded"

# Values as they appear in urlencoded text (a query string or a form body).
ODD_VALUES: dict[str, bytes] = {
    "long-under-limit": b"A" * 4000,
    "long-over-limit": b"A" * 5000,
    "nul-escaped": b"%00",
    "nul-raw": b"a\x00b",
    "bad-percent": b"%zz",
    "lone-percent": b"%",
    "short-percent": b"%f",
    "bad-utf8-escaped": b"%ff%fe",
    "bad-utf8-raw": b"\xff\xfe",
    "overlong-utf8": b"%c0%af",
    "utf8-surrogate": b"%ed%a0%80",
    "bidi-and-emoji": b"%e2%80%ae%f0%9f%94%91",
    "crlf": b"%0d%0aSet-Cookie:%20x=1",
    "empty": b"",
    "spaces": b"+++",
    "quote-backslash-tag": b"%22%5c%3cscript%3e",
    "bad-ipv6-url": b"http://[::1",
    "javascript-url": b"javascript:alert(1)",
    "port-out-of-range": b"http://127.0.0.1:99999/callback",
    "huge-number": b"99999999999999999999999",
    "jwt-shape": b"a.b.c",
    "unsigned-jwt": b"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
}

_noise = random.Random(7)

# Whole bodies for the endpoints that read a form.
ODD_BODIES: dict[str, bytes] = {
    "empty": b"",
    "only-separators": b"&&&&",
    "empty-names": b"=&==&=",
    "2000-parameters": b"a=1&" * 2000,
    "150-distinct-parameters": b"&".join(b"p%d=1" % i for i in range(150)),
    "over-max-body-size": b"x=" + b"A" * 70_000,
    "lone-percent": b"%",
    "nul-bytes": b"\x00\x00\x00",
    "random-bytes": bytes(_noise.getrandbits(8) for _ in range(512)),
    "json-text": b'{"grant_type": "authorization_code"}',
    "utf8-bom": b"\xef\xbb\xbfgrant_type=refresh_token",
}

# None sends no Content-Type header at all.
CONTENT_TYPES: dict[str, bytes | None] = {
    "absent": None,
    "empty": b"",
    "text-plain": b"text/plain",
    "json": b"application/json",
    "multipart": b"multipart/form-data; boundary=x",
    "form-latin1": FORM + b"; charset=latin-1",
    "only-semicolons": b";;;",
    "parameter-without-value": FORM + b"; charset",
    "wildcard": b"*/*",
    "two-types": FORM + b", application/json",
    "not-ascii": b"\xff\xfe/\xfd",
}

ODD_COOKIES: dict[str, bytes] = {
    "browser-unknown": b"frontauth_browser=" + b"A" * 99,
    "browser-long": b"frontauth_browser=" + b"A" * 5000,
    "browser-bad-escape": b"frontauth_browser=%ff%00",
    "session-unknown": b"frontauth_session=" + b"A" * 43,
    "session-not-ascii": b"frontauth_session=\xff\xfe",
    "malformed": b"=;;=;frontauth_session",
}

POST_ONLY_METHODS = (b"GET", b"HEAD", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"TRACE", b"BREW")
GET_ONLY_METHODS = (b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"TRACE", b"BREW")

FORM_KINDS = ("parameter-values", "bodies", "content-types", "authorization-headers", "methods")
QUERY_KINDS = ("parameter-values", "authorization-headers", "cookies", "methods")


def authorization_headers(client_id: str) -> dict[str, bytes]:
    """Authorization header values of every shape, some naming a real client."""

    def basic(raw: bytes) -> bytes:
        return b"Basic " + base64.b64encode(raw)

    known = client_id.encode()
    return {
        "empty": b"",
        "basic-alone": b"Basic",
        "basic-space": b"Basic ",
        "basic-not-base64": b"Basic !!!!",
        "basic-bad-padding": b"Basic YTpi=",
        "basic-two-values": b"Basic YTpi YTpi",
        "basic-no-colon": basic(b"nocolon"),
        "basic-only-colon": basic(b":"),
        "basic-not-utf8": basic(b"\xff\xfe:\xff"),
        "basic-bad-percent": basic(b"%zz:%zz"),
        "basic-known-client-wrong-secret": basic(known + b":wrong"),
        "basic-known-client-empty-secret": basic(known + b":"),
        "basic-lowercase-scheme": b"basic " + base64.b64encode(known + b":x"),
        "basic-long-id": basic(b"A" * 3000 + b":x"),
        "bearer-alone": b"Bearer",
        "bearer-token": b"Bearer x",
        "bearer-long": b"Bearer " + b"A" * 6000,
        "digest": b"Digest username=x, realm=y",
        "negotiate": b"Negotiate",
        "not-ascii": b"\xff\xfe",
    }


@attrs.frozen
class OddRequest:
    """One raw request and the label that names it in a failure message."""

    label: str
    method: bytes
    target: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""


def form_with(fields: dict[str, str], name: str, odd: bytes) -> bytes:
    """Urlencode the fields, with the raw odd value in place of ``name``'s value."""
    others = urllib.parse.urlencode({k: v for k, v in fields.items() if k != name}).encode()
    return others + (b"&" if others else b"") + name.encode() + b"=" + odd


def form_requests(
    path: bytes,
    field_sets: list[dict[str, str]],
    client_id: str,
    headers: tuple[tuple[bytes, bytes], ...] = (),
    valid_fields: dict[str, str] | None = None,
) -> dict[str, list[OddRequest]]:
    """Odd requests for an endpoint that reads a form body, grouped by FORM_KINDS.

    Each field of each set gets every odd value in turn. The other kinds send
    ``valid_fields`` (default: the first set) with an odd body, content type,
    Authorization header naming ``client_id``, or method.
    """
    form = ((b"Content-Type", FORM), *headers)
    valid = urllib.parse.urlencode(valid_fields or field_sets[0]).encode()
    return {
        "parameter-values": [
            OddRequest(f"{name}={label}", b"POST", path, form, form_with(fields, name, value))
            for fields in field_sets
            for name in fields
            for label, value in ODD_VALUES.items()
        ],
        "bodies": [OddRequest(label, b"POST", path, form, body) for label, body in ODD_BODIES.items()],
        "content-types": [
            OddRequest(label, b"POST", path, headers if value is None else ((b"Content-Type", value), *headers), valid)
            for label, value in CONTENT_TYPES.items()
        ] + [OddRequest("chunked", b"POST", path, (*form, (b"Transfer-Encoding", b"chunked")), b"5\r\ngrant\r\n0\r\n\r\n")],
        "authorization-headers": [
            OddRequest(label, b"POST", path, (*form, (b"Authorization", value)), valid)
            for label, value in authorization_headers(client_id).items()
        ],
        "methods": [
            OddRequest(method.decode(), method, path + b"?" + valid, form, valid) for method in POST_ONLY_METHODS
        ],
    }


def query_requests(
    path: bytes, params: dict[str, str], client_id: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> dict[str, list[OddRequest]]:
    """Odd requests for an endpoint that reads its query string, grouped by QUERY_KINDS."""
    valid = path + b"?" + urllib.parse.urlencode(params).encode()
    return {
        "parameter-values": [
            OddRequest(f"{name}={label}", b"GET", path + b"?" + form_with(params, name, value), headers)
            for name in params
            for label, value in ODD_VALUES.items()
        ],
        "authorization-headers": [
            OddRequest(label, b"GET", valid, (*headers, (b"Authorization", value)))
            for label, value in authorization_headers(client_id).items()
        ],
        "cookies": [OddRequest(label, b"GET", valid, ((b"Cookie", value),)) for label, value in ODD_COOKIES.items()],
        "methods": [
            OddRequest(method.decode(), method, valid, ((b"Content-Type", FORM), *headers), b"pending=x")
            for method in GET_ONLY_METHODS
        ],
    }


async def send_raw(
    http: TestClient,
    method: bytes,
    target: bytes,
    *,
    headers: typing.Sequence[tuple[bytes, bytes]] = (),
    body: bytes = b"",
) -> int:
    """Send one raw HTTP/1.1 request to the test server and return the response status."""
    reader, writer = await asyncio.open_connection(http.server.host, http.server.port)
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1:8080", b"Connection: close"]
    lines.extend(name + b": " + value for name, value in headers)
    if not any(name.lower() == b"transfer-encoding" for name, _ in headers):
        lines.append(b"Content-Length: %d" % len(body))
    try:
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        await writer.drain()
    except ConnectionError:
        # The server may respond and close the connection before reading a large body.
        pass
    try:
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    parts = status_line.split()
    assert len(parts) >= 2, f"no HTTP response to {method!r} {target[:80]!r}: {status_line!r}"
    return int(parts[1])


async def server_errors(http: TestClient, requests: list[OddRequest]) -> list[str]:
    """Send every request and return the labels of those that got a 5xx status."""
    failures = []
    for request in requests:
        status = await send_raw(http, request.method, request.target, headers=request.headers, body=request.body)
        if status >= 500:
            failures.append(f"{request.label} got {status}")
    return failures
