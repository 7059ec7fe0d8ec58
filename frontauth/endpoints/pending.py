"""Loading the pending authorization behind the sign-in and consent pages."""

from __future__ import annotations

import hmac

from aiohttp import web

from frontauth import authorization
from frontauth.browser import browser_id, check_csrf
from frontauth.errors import PageError
from frontauth.responses import CLIENT_ID, FORM_ACTION, VERIFIED_REDIRECT
from frontauth.services import Services
from frontauth.stores import PendingAuthorization
from frontauth.tokens import digest



def expired() -> PageError:
    return PageError(
        "This sign-in link has expired",
        "The authorization request expired or was already completed. Return to the application and start again.",
    )


def pending_id_of(values: dict[str, str]) -> str:
    pending_id = values.get("pending", "")
    if not pending_id or len(pending_id) > 100:
        raise expired()
    return pending_id


def check_browser(request: web.Request, pending: PendingAuthorization) -> str:
    """Check that the request comes from the browser that started the pending authorization."""
    browser = browser_id(request)
    if browser is None or not hmac.compare_digest(digest(browser), pending.browser):
        raise PageError(
            "This sign-in was started elsewhere",
            "Start the sign-in again from the application, in this browser.",
            status=403,
        )
    return browser


def mark_verified(request: web.Request, pending: PendingAuthorization) -> None:
    """From here on, errors may be redirected to the client (its redirect_uri was verified)."""
    request[VERIFIED_REDIRECT] = (pending.redirect_uri, pending.state)
    request[FORM_ACTION] = authorization.redirect_origin(pending.redirect_uri)
    request[CLIENT_ID] = pending.client_id


async def load_pending(request: web.Request, services: Services, pending_id: str) -> tuple[PendingAuthorization, str]:
    pending = await services.stores.get_pending(pending_id)
    if pending is None:
        raise expired()
    browser = check_browser(request, pending)
    mark_verified(request, pending)
    return pending, browser


def check_form_csrf(services: Services, form_name: str, pending_id: str, browser: str, form: dict[str, str]) -> None:
    # SECURITY: the token binds the form to this pending authorization and this browser.
    if not check_csrf(services, form_name, pending_id, browser, form.get("csrf_token")):
        raise PageError(
            "This form has expired",
            "The form was not sent from this sign-in page. Return to the application and start again.",
            status=403,
        )
