"""Browser state at the authorization server: the binding cookie, sessions and CSRF.

``frontauth_browser`` is a random cookie set on the first authorization
request. Each pending authorization records its digest, so sign-in and consent
forms only work in the browser that started the flow. CSRF tokens are an HMAC
of the form name, the pending authorization and that cookie: a token from
another flow, another browser or another form does not verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from aiohttp import web

from frontauth.services import Services
from frontauth.stores import SessionRecord
from frontauth.tokens import digest, new_opaque

BROWSER_COOKIE = "frontauth_browser"
COOKIE_PATH = "/oauth"


def _cookie_options(services: Services, max_age: int) -> dict[str, object]:
    return {
        "max_age": max_age,
        "path": COOKIE_PATH,
        "httponly": True,
        "samesite": "Lax",
        "secure": services.settings.issuer.startswith("https://"),
    }


def browser_id(request: web.Request) -> str | None:
    value = request.cookies.get(BROWSER_COOKIE)
    return value if value and 20 <= len(value) <= 100 else None


def ensure_browser_id(request: web.Request, response_cookies: dict[str, str]) -> str:
    """Return the browser cookie's value, creating one to set on the response if absent."""
    existing = browser_id(request)
    if existing is not None:
        return existing
    created = new_opaque()
    response_cookies[BROWSER_COOKIE] = created
    return created


def set_cookies(response: web.StreamResponse, services: Services, cookies: dict[str, str]) -> None:
    for name, value in cookies.items():
        lifetime = services.settings.session.ttl if name == services.settings.session.cookie_name else 30 * 86400
        response.set_cookie(name, value, **_cookie_options(services, lifetime))  # type: ignore[arg-type]


def csrf_token(services: Services, form: str, pending_id: str, browser: str) -> str:
    """Return the CSRF token for one form of one pending authorization in one browser."""
    message = f"{form}\x00{pending_id}\x00{digest(browser)}".encode()
    mac = hmac.new(services.csrf_key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def check_csrf(services: Services, form: str, pending_id: str, browser: str | None, submitted: str | None) -> bool:
    if browser is None or not submitted:
        return False
    # Bytes, because compare_digest raises TypeError on str with non-ASCII characters.
    expected = csrf_token(services, form, pending_id, browser).encode()
    return hmac.compare_digest(expected, submitted.encode("utf-8", "surrogatepass"))


async def load_session(request: web.Request, services: Services) -> SessionRecord | None:
    value = request.cookies.get(services.settings.session.cookie_name)
    if not value or len(value) > 100:
        return None
    return await services.stores.get_session(value)


async def start_session(services: Services, record: SessionRecord, cookies: dict[str, str]) -> None:
    session_id = new_opaque()
    await services.stores.put_session(session_id, record, services.settings.session.ttl)
    cookies[services.settings.session.cookie_name] = session_id
