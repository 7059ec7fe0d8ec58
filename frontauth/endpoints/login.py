"""The sign-in page of local mode (GET shows the form, POST checks it).

Steps: load_pending (exists, same browser), check_form_csrf, authenticate,
start_session, then consent (or the code at once when consent is remembered
or turned off). A failed sign-in shows one message whatever failed, so the
page does not reveal which user names exist.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from frontauth import authorization
from frontauth.appkeys import SERVICES
from frontauth.browser import csrf_token, set_cookies, start_session
from frontauth.endpoints.pending import check_form_csrf, expired, load_pending, pending_id_of
from frontauth.params import form_params, query_params
from frontauth.responses import NO_STORE, redirect_with_params, render_page
from frontauth.services import Services
from frontauth.stores import PendingAuthorization, SessionRecord

logger = logging.getLogger("frontauth.oauth")

FORM = "login"
MAX_USERNAME = 256
MAX_PASSWORD = 1024


def _page(request: web.Request, services: Services, pending_id: str, browser: str, pending: PendingAuthorization,
          *, error: str | None = None, username: str = "", status: int = 200) -> web.Response:
    context = {
        "pending_id": pending_id,
        "csrf_token": csrf_token(services, FORM, pending_id, browser),
        "development_login": services.users.development_login,
        "error": error,
        "username": username,
        "client_id": pending.client_id,
    }
    return render_page(request, "login.html", context, status=status)


async def login_page(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    params, _ = query_params(request)
    pending_id = pending_id_of(params)
    pending, browser = await load_pending(request, services, pending_id)
    return _page(request, services, pending_id, browser, pending)


async def login_submit(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    form, _ = await form_params(request)
    pending_id = pending_id_of(form)
    pending, browser = await load_pending(request, services, pending_id)
    check_form_csrf(services, FORM, pending_id, browser, form)

    username = form.get("username", "").strip()
    password = form.get("password", "")
    identity = None
    if username and len(username) <= MAX_USERNAME and len(password) <= MAX_PASSWORD:
        identity = await services.users.authenticate(username, password)
    if identity is None:
        logger.info("sign-in failed for client_id=%s", pending.client_id)
        message = (
            "Enter a valid e-mail address." if services.users.development_login
            else "The user name or password is incorrect."
        )
        return _page(request, services, pending_id, browser, pending, error=message,
                     username=username[:MAX_USERNAME], status=401)

    now = int(time.time())
    cookies: dict[str, str] = {}
    await start_session(services, SessionRecord(subject=identity.subject, auth_time=now, name=identity.name,
                                                email=identity.email), cookies)

    approved = await services.stores.get_consent(identity.subject, pending.client_id)
    new_scopes = [s for s in pending.scope.split() if s not in approved]
    consent = services.settings.consent
    if consent.enabled and (new_scopes or not consent.remember):
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
