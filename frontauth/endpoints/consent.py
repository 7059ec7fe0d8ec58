"""The consent page (GET shows what the client asks for, POST records the decision).

Steps: load_pending (exists, same browser), load_session (signed in), then on
POST check_form_csrf and take the pending authorization, which makes the form
single use. Approve issues the code. Deny returns access_denied to the client
with state and iss (RFC 6749 §4.1.2.1, RFC 9207). When the client was removed
while the person decided, no trusted redirect is left, so a denial shows the
"you may close this window" page and an approval an error page.
"""

from __future__ import annotations

import urllib.parse

from aiohttp import web

from frontauth import authorization
from frontauth.appkeys import SERVICES
from frontauth.browser import csrf_token, load_session
from frontauth.endpoints.pending import check_form_csrf, expired, load_pending, pending_id_of
from frontauth.errors import AccessDenied, PageError
from frontauth.pages import describe_client
from frontauth.params import form_params, query_params
from frontauth.responses import NO_STORE, redirect_with_params, render_page
from frontauth.services import Services
from frontauth.stores import PendingAuthorization, SessionRecord

FORM = "consent"


def _login_redirect(services: Services, pending_id: str) -> web.Response:
    return web.Response(
        status=303, headers={"Location": f"{services.settings.issuer}/oauth/login?pending={pending_id}", **NO_STORE}
    )


def _client_removed() -> PageError:
    return PageError("Unknown application", "The application was removed while you were signing in.")


def redirect_host(redirect_uri: str) -> str:
    """The host the browser returns to, or the scheme of a private-use redirect (RFC 8252 §7.1)."""
    return urllib.parse.urlsplit(redirect_uri).netloc or redirect_uri.split(":", 1)[0]


async def _scopes(services: Services, pending: PendingAuthorization, session: SessionRecord) -> list[dict[str, object]]:
    """Return each requested scope with its configured description, marked new when not approved before."""
    approved = await services.stores.get_consent(session.subject, pending.client_id, pending.resource)
    return [
        {
            "name": name,
            "description": services.settings.scopes.get(name, name),
            "new": bool(approved) and name not in approved,
        }
        for name in pending.scope.split()
    ]


async def consent_page(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    params, _ = query_params(request)
    pending_id = pending_id_of(params)
    pending, browser = await load_pending(request, services, pending_id)
    session = await load_session(request, services)
    if session is None:
        return _login_redirect(services, pending_id)
    client = await services.clients.find(pending.client_id)
    if client is None:
        raise _client_removed()
    scopes = await _scopes(services, pending, session)
    context = {
        "pending_id": pending_id,
        "csrf_token": csrf_token(services, FORM, pending_id, browser),
        "client": describe_client(request, client, services.clients.is_configured(client.client_id)),
        "redirect_host": redirect_host(pending.redirect_uri),
        "resource": pending.resource,
        "scopes": scopes,
        "any_new": any(scope["new"] for scope in scopes),
        "user": session.email or session.name or session.subject,
    }
    return render_page(request, "consent.html", context)


async def consent_submit(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    form, _ = await form_params(request)
    pending_id = pending_id_of(form)
    pending, browser = await load_pending(request, services, pending_id)
    check_form_csrf(services, FORM, pending_id, browser, form)
    session = await load_session(request, services)
    if session is None:
        return _login_redirect(services, pending_id)
    decision = form.get("decision")
    if decision not in ("approve", "deny"):
        raise PageError("Invalid decision", "Choose Approve or Deny.")

    # SECURITY: taking the pending authorization makes the form single use.
    taken = await services.stores.take_pending(pending_id)
    if taken is None:
        raise expired()
    client = await services.clients.find(taken.client_id)
    if decision == "deny":
        if client is None:
            # The removed client's redirect_uri is no longer trusted, so the person gets a page.
            return render_page(request, "closed.html", {})
        raise AccessDenied("the user denied the request", redirectable=True)
    if client is None:
        raise _client_removed()

    if services.settings.consent.remember:
        approved = await services.stores.get_consent(session.subject, taken.client_id, taken.resource)
        await services.stores.put_consent(
            session.subject, taken.client_id, taken.resource, approved | set(taken.scope.split()), services.settings.refresh_ttl
        )
    params = await authorization.issue_code(services, taken, session.subject, session.auth_time)
    return redirect_with_params(taken.redirect_uri, params)
