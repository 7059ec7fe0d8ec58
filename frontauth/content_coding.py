"""Rejection of request bodies that carry a content coding (Content-Encoding).

The app is created with aiohttp's ``auto_decompress`` handler argument off, so
aiohttp's HTTP parser passes every body through undecoded. With it on, the
parser of aiohttp 3.14 rejects a ``br`` or ``zstd`` body when the optional Brotli or zstd
module is missing. That happens before routing and before any middleware, so
the client gets aiohttp's plain-text 400 instead of an OAuth error. The
parser also ignores a coding it does not know and hands the still-encoded
body to the handler.

With decoding off, :func:`reject_content_coding` rejects any body that
carries a content coding, whichever it is, before a handler reads it. It
raises :class:`~frontauth.errors.InvalidRequest`, which the request
middleware (:mod:`frontauth.middleware`) renders like every other error:
JSON with ``Cache-Control: no-store`` on the API endpoints, and the error
page on the browser endpoints. OAuth request bodies are small forms and
JSON documents (``server.max_body_size``), so compression gains little, and
rejecting every coding means that no request makes frontauth decompress
anything.
"""

from __future__ import annotations

from aiohttp import hdrs, web

from frontauth import errors

# web.Application(handler_args=...): keyword arguments of aiohttp's request handler.
HANDLER_ARGS = {"auto_decompress": False}

# Values that mean the body has no coding: an empty header, or "identity".
NO_CODING = frozenset({"", "identity"})


def has_content_coding(request: web.Request) -> bool:
    """Return whether the request has a body encoded with a content coding other than identity."""
    if not request.body_exists:
        return False
    codings = [
        coding.strip().lower()
        for value in request.headers.getall(hdrs.CONTENT_ENCODING, [])
        for coding in value.split(",")
    ]
    return any(coding not in NO_CODING for coding in codings)


def reject_content_coding(request: web.Request) -> None:
    """Reject a request body with a content coding before a handler reads it.

    Raises:
        InvalidRequest: the body has a Content-Encoding other than identity,
            on a route that exists (unknown routes keep their 404 and 405).
    """
    if hdrs.CONTENT_ENCODING not in request.headers:
        return
    if request.match_info.http_exception is None and has_content_coding(request):
        # Deviation: RFC 7694 §5 has a server without request codings respond 415 with
        # Accept-Encoding: identity. The header is kept, but the status is RFC 6749
        # §5.2's 400 invalid_request, which OAuth clients expect for a malformed request.
        codings = ", ".join(request.headers.getall(hdrs.CONTENT_ENCODING))
        raise errors.InvalidRequest(
            "request bodies with a Content-Encoding are not supported; send the body uncompressed",
            detail=f"Content-Encoding {codings[:80]!r}",
            headers={"Accept-Encoding": "identity"},
        )
