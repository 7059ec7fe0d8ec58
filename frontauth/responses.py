"""The one place where errors become HTTP responses, plus the security headers.

API endpoints return JSON ``{"error", "error_description"}`` with the RFC 6749
§5.2 status and ``Cache-Control: no-store``. Browser endpoints redirect the
error to the client only when the handler has verified the client and its
redirect_uri (RFC 6749 §4.1.2.1); otherwise they render the error page, so an
attacker cannot turn frontauth into an open redirector.
"""

from __future__ import annotations

import functools
import logging
import re
import time
import typing
import urllib.parse

import aiohttp_jinja2
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict

from frontauth import errors, fastjson
from frontauth.appkeys import SERVICES
from frontauth.metrics import METRICS
from frontauth.storage import StorageUnavailable

logger = logging.getLogger("frontauth.oauth")
access_logger = logging.getLogger("frontauth.access")

# Set by browser handlers once client_id and redirect_uri are verified:
# (redirect_uri, state). Only then may an error travel to the client.
VERIFIED_REDIRECT = web.RequestKey("verified_redirect", tuple)
# The client a request came from, for the log line of a rejection.
CLIENT_ID = web.RequestKey("client_id", str)
# Extra form-action sources for the page's CSP (the client's redirect origin).
FORM_ACTION = web.RequestKey("form_action", str)
# Extra img-src source for the page's CSP (the origin of a configured client's logo).
IMG_SRC = web.RequestKey("img_src", str)

BROWSER_PATHS = frozenset({"/oauth/authorize", "/oauth/login", "/oauth/consent", "/oauth/callback"})
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# The headers every JSON response starts from, copied for each response.
_JSON_HEADERS = CIMultiDict({**NO_STORE, "Content-Type": "application/json; charset=utf-8"})
RETRY_AFTER_STORAGE = "2"


def json_response(body: typing.Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """Return a JSON response that no cache may keep (RFC 6749 §5.1)."""
    merged = _JSON_HEADERS.copy()
    if headers:
        merged.update(headers)
    return web.Response(body=fastjson.dumps(body), status=status, headers=merged)


# Characters that urlencode() leaves as they are (quote_plus's safe set).
_UNRESERVED = re.compile(r"[A-Za-z0-9_.\-~]*")


@functools.lru_cache(maxsize=256)
def _quoted_cached(value: str) -> str:
    return urllib.parse.quote_plus(value)


def _quoted(value: str) -> str:
    """Return ``value`` as urlencode() writes it; codes and most states need no quoting."""
    if _UNRESERVED.fullmatch(value):
        return value
    if len(value) <= 200:
        # The issuer and the error descriptions come back on every redirect.
        return _quoted_cached(value)
    return urllib.parse.quote_plus(value)


def redirect_with_params(redirect_uri: str, params: dict[str, str]) -> web.Response:
    """302 to the client's redirect_uri with params added to its query (RFC 6749 §4.1.2)."""
    added = "&".join(f"{_quoted(name)}={_quoted(value)}" for name, value in params.items())
    if "#" not in redirect_uri:
        # Registered redirect URIs carry no fragment (RFC 6749 §3.1.2), so the
        # query can be appended to the text as it is. This matches the general
        # path below, except that a query ending in "&" gets no second "&".
        if "?" not in redirect_uri:
            location = f"{redirect_uri}?{added}"
        elif redirect_uri.endswith(("?", "&")):
            location = redirect_uri + added
        else:
            location = f"{redirect_uri}&{added}"
    else:
        parts = urllib.parse.urlsplit(redirect_uri)
        query = parts.query + ("&" if parts.query else "") + added
        location = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    return web.Response(status=302, headers={"Location": location, **NO_STORE})


def render_page(request: web.Request, template: str, context: dict[str, typing.Any], status: int = 200) -> web.Response:
    response = aiohttp_jinja2.render_template(template, request, context, status=status)
    response.headers.update(NO_STORE)
    return response


def render_error(request: web.Request, error: errors.OAuthError) -> web.StreamResponse:
    """Turn an OAuth error into the response its endpoint calls for."""
    issuer = request.app[SERVICES].settings.issuer
    if request.path in BROWSER_PATHS:
        verified = request.get(VERIFIED_REDIRECT)
        if verified is not None and error.redirectable and not isinstance(error, errors.PageError):
            redirect_uri, state = verified
            params = error.body()
            if state is not None:
                params["state"] = state
            params["iss"] = issuer  # RFC 9207 §2
            return redirect_with_params(redirect_uri, params)
        title = getattr(error, "title", None) or "This request cannot continue"
        context = {"title": title, "error": error.error, "description": error.description or ""}
        return render_page(request, "error.html", context, status=error.status if error.status != 401 else 400)

    headers = dict(error.headers)
    if isinstance(error, errors.InsufficientScope):
        headers["WWW-Authenticate"] = f'Bearer error="insufficient_scope", scope="{error.scope}"'
    elif error.status == 401 and "WWW-Authenticate" not in headers:
        headers["WWW-Authenticate"] = f'Bearer error="{error.error}"'
    return json_response(error.body(), status=error.status, headers=headers)


def _log_rejection(request: web.Request, error: errors.OAuthError) -> None:
    client_id = request.get(CLIENT_ID, "-")
    logger.info("rejected %s %s client_id=%s error=%s", request.method, request.path, client_id, error.error)
    if error.detail:
        logger.debug("rejected %s detail: %s", request.path, error.detail)


def _is_protocol_path(path: str) -> bool:
    """Return whether a path belongs to the OAuth endpoints or the discovery documents."""
    path = "/" + path.lstrip("/")  # a doubled leading slash still names an OAuth path
    return path == "/oauth" or path.startswith("/oauth/") or "/.well-known" in path


def _render_routing_error(request: web.Request, exc: web.HTTPException) -> web.StreamResponse:
    """Render the router's 404 or 405 for a protocol path as an invalid_request error."""
    allowed = ", ".join(sorted(exc.allowed_methods)) if isinstance(exc, web.HTTPMethodNotAllowed) else ""
    if allowed:
        error = errors.InvalidRequest(f"this endpoint accepts {allowed} only", detail=request.method)
        error.status = 405
    else:
        error = errors.InvalidRequest("no endpoint or document at this path")
        error.status = 404
    _log_rejection(request, error)
    response = render_error(request, error)
    if allowed:
        # RFC 9110 §15.5.6: a 405 response lists the supported methods in Allow.
        response.headers["Allow"] = allowed
    return response


def error_response(request: web.Request, exc: Exception) -> web.StreamResponse:
    """Render an OAuthError, a storage outage or an unexpected exception raised by a handler.

    Raises:
        Exception: ``exc`` itself when aiohttp should send it as it is: an
            HTTPException other than the unreadable bodies and the router's
            404 and 405 on protocol paths (redirects, static files).
    """
    metrics = request.app.get(METRICS)
    if isinstance(exc, errors.OAuthError):
        _log_rejection(request, exc)
        if metrics is not None:
            metrics.count_auth_failure(request, exc.error)
        return render_error(request, exc)
    if isinstance(exc, StorageUnavailable):
        logger.error("storage unavailable on %s %s: %s", request.method, request.path, exc)
        if metrics is not None:
            metrics.count_storage_error(exc)
        error = errors.TemporarilyUnavailable(
            "storage is temporarily unavailable; retry later", headers={"Retry-After": RETRY_AFTER_STORAGE}
        )
        response = render_error(request, error)
        response.headers["Retry-After"] = RETRY_AFTER_STORAGE
        return response
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        error = errors.InvalidRequest("request body is too large")
        error.status = 413
        _log_rejection(request, error)
        return render_error(request, error)
    if isinstance(exc, (web.RequestPayloadError, HttpProcessingError)):
        # The client sent a body that cannot be read, for example truncated
        # chunks: a client error, not a server fault. Encoded bodies are
        # rejected earlier, by frontauth.content_coding.
        error = errors.InvalidRequest("the request body cannot be decoded", detail=type(exc).__name__)
        _log_rejection(request, error)
        return render_error(request, error)
    if isinstance(exc, web.HTTPException):
        if exc.status == 400 and request.path not in BROWSER_PATHS and exc.content_type == "text/plain":
            # aiohttp raises plain-text 400s for bodies it cannot read (for
            # example an unsupported content-encoding): answer in the OAuth form.
            error = errors.InvalidRequest("the request body cannot be decoded", detail=exc.text)
            _log_rejection(request, error)
            return render_error(request, error)
        if exc.status in (404, 405) and _is_protocol_path(request.path):
            # The router's plain-text 404 and 405 become the endpoint's own
            # form: JSON with no-store on API paths, the error page on browser paths.
            return _render_routing_error(request, exc)
        raise exc
    if isinstance(exc, ConnectionResetError):
        # The client disconnected mid-request, so no response can reach it.
        logger.debug("client disconnected during %s %s", request.method, request.path)
        return web.Response(status=400)
    logger.error("unexpected error on %s %s", request.method, request.path, exc_info=exc)
    return render_error(request, errors.ServerError("internal server error"))


def _content_security_policy(request: web.Request) -> str:
    if request.path not in BROWSER_PATHS:
        # Only the browser endpoints set FORM_ACTION or IMG_SRC, and looking up
        # a missing key of a request raises and catches a KeyError.
        return DEFAULT_CSP
    form_action = request.get(FORM_ACTION)
    img_src = request.get(IMG_SRC)
    if not form_action and not img_src:
        return DEFAULT_CSP
    # No script at all and no inline style: the pages use only /static and /branding files.
    return (
        f"default-src 'none'; style-src 'self'; img-src 'self'{' ' + img_src if img_src else ''}; "
        f"form-action 'self'{' ' + form_action if form_action else ''}; frame-ancestors 'none'; base-uri 'none'"
    )


DEFAULT_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)
HSTS = "max-age=31536000; includeSubDomains"


def add_security_headers(request: web.Request, response: web.StreamResponse, started: float) -> None:
    """Add the security headers to a response and write the access log line."""
    headers = response.headers
    for name, value in SECURITY_HEADERS:
        headers.setdefault(name, value)
    headers.setdefault("Content-Security-Policy", _content_security_policy(request))
    if request.app[SERVICES].settings.issuer.startswith("https://"):
        headers.setdefault("Strict-Transport-Security", HSTS)
    if access_logger.isEnabledFor(logging.INFO):
        # The path only: query strings of browser endpoints carry state and codes.
        access_logger.info(
            "%s %s %s %.1fms", request.method, request.path, response.status, (time.perf_counter() - started) * 1000
        )
