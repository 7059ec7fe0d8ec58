"""The sign-in page of local mode (GET shows the form, POST checks it).

Steps: load_pending (exists, same browser), check_form_csrf,
count_failures (reject a name over its limit), authenticate, start_session, then consent (or the code at
once when consent is remembered or turned off). A failed sign-in shows one
message whatever failed, so the page does not reveal which user names exist.

Failed sign-ins are counted per user name, besides the per-address limit of
the rate-limit middleware: an attacker who spreads password guesses over many
addresses still gets ``login.max_failures`` guesses per name per
``login.failure_window``. The count is kept under a digest of the name, for
names that exist and names that do not alike, so the limit reveals nothing
either.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from frontauth import authorization
from frontauth.appkeys import SERVICES
from frontauth.browser import csrf_token, set_cookies, start_session
from frontauth.endpoints.pending import check_form_csrf, expired, load_pending, pending_id_of
from frontauth.pages import describe_client
from frontauth.params import form_params, query_params
from frontauth.ratelimit import retry_after_seconds
from frontauth.storage import WindowState
from frontauth.responses import NO_STORE, redirect_with_params, render_page
from frontauth.services import Services
from frontauth.stores import PendingAuthorization, SessionRecord
from frontauth.tokens import digest

logger = logging.getLogger("frontauth.oauth")

FORM = "login"
MAX_USERNAME = 256
MAX_PASSWORD = 1024
FAILURE_RULE = "login_failures"
WRONG_CREDENTIALS = "The user name or password is incorrect."
WRONG_EMAIL = "Enter a valid e-mail address."


async def _page(request: web.Request, services: Services, pending_id: str, browser: str, pending: PendingAuthorization,
                *, error: str | None = None, username: str = "", status: int = 200) -> web.Response:
    client = await services.clients.find(pending.client_id)
    configured = services.clients.is_configured(pending.client_id)
    context = {
        "pending_id": pending_id,
        "csrf_token": csrf_token(services, FORM, pending_id, browser),
        "development_login": services.users.development_login,
        "error": error,
        "username": username,
        "client": describe_client(request, client, configured) if client is not None else {"name": pending.client_id, "verified": False},
    }
    return render_page(request, "login.html", context, status=status)


async def count_failures(services: Services, username: str, *, record: bool) -> WindowState:
    """Check the failure window of a user name; with ``record``, count one more failure.

    The window is the rate limiter's sliding window in the storage driver, so
    instances that share the store share the count. The key contains a digest, so
    storage never keeps the names people typed, right or wrong.
    """
    login = services.settings.login
    key = f"{services.settings.storage.prefix}ratelimit:{FAILURE_RULE}:{digest(username.casefold())}"
    return await services.driver.hit(key, login.failure_window, login.max_failures, services.clock(), consume=record)


async def login_page(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    params, _ = query_params(request)
    pending_id = pending_id_of(params)
    pending, browser = await load_pending(request, services, pending_id)
    return await _page(request, services, pending_id, browser, pending)


async def login_submit(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    form, _ = await form_params(request)
    pending_id = pending_id_of(form)
    pending, browser = await load_pending(request, services, pending_id)
    check_form_csrf(services, FORM, pending_id, browser, form)

    username = form.get("username", "").strip()
    password = form.get("password", "")
    shown_name = username[:MAX_USERNAME]
    limited = services.settings.login.max_failures > 0 and bool(username)
    if limited:
        # SECURITY: rejected before the password is checked, so a guess in the lockout learns nothing.
        window = await count_failures(services, shown_name, record=False)
        if not window.allowed:
            return await _too_many_failures(request, services, pending_id, browser, pending, shown_name, window)

    identity = None
    if username and len(username) <= MAX_USERNAME and len(password) <= MAX_PASSWORD:
        identity = await services.users.authenticate(username, password)
    if identity is None:
        logger.info("sign-in failed for client_id=%s", pending.client_id)
        if limited:
            await count_failures(services, shown_name, record=True)
        message = WRONG_EMAIL if services.users.development_login else WRONG_CREDENTIALS
        return await _page(request, services, pending_id, browser, pending, error=message, username=shown_name, status=401)

    now = int(time.time())
    cookies: dict[str, str] = {}
    await start_session(services, SessionRecord(subject=identity.subject, auth_time=now, name=identity.name,
                                                email=identity.email), cookies)

    if await authorization.consent_needed(services, identity.subject, pending) is not None:
        response: web.StreamResponse = web.Response(
            status=303,
            headers={"Location": f"{services.settings.issuer}/oauth/consent?pending={pending_id}", **NO_STORE},
        )
    else:
        taken = await services.stores.take_pending(pending_id)
        if taken is None:
            raise expired()
        response = redirect_with_params(taken.redirect_uri, await authorization.issue_code(services, taken, identity.subject, now))
    set_cookies(response, services, cookies)
    return response


async def _too_many_failures(request: web.Request, services: Services, pending_id: str, browser: str,
                             pending: PendingAuthorization, username: str, window: WindowState) -> web.Response:
    retry_after = retry_after_seconds(window)
    minutes = max(1, -(-int(retry_after) // 60))
    logger.info("sign-in rejected for client_id=%s: %d failed sign-ins for one user name", pending.client_id, window.count)
    message = (
        f"Too many failed sign-ins with this user name. Try again in {minutes} "
        f"minute{'s' if minutes != 1 else ''}."
    )
    response = await _page(request, services, pending_id, browser, pending, error=message, username=username, status=429)
    response.headers["Retry-After"] = retry_after
    return response
