"""The authorization endpoint (RFC 6749 §4.1.1, OAuth 2.1 §4.1.1).

Steps: check_redirect_parameters_unique, check_client and check_redirect_uri
come first, because no error may be redirected before they pass. Then
check_unique, check_response_type, check_state, check_pkce, check_scope and
check_resource. Finally the endpoint either issues the code at once (signed
in, consent already given) or stores a pending authorization and sends the
browser to the sign-in or consent page.
"""

from __future__ import annotations

import time

import attrs
from aiohttp import web

from frontauth import authorization, pkce, remote
from frontauth.appkeys import SERVICES
from frontauth.browser import ensure_browser_id, load_session, set_cookies
from frontauth.params import split_pairs
from frontauth.responses import CLIENT_ID, FORM_ACTION, NO_STORE, VERIFIED_REDIRECT, redirect_with_params
from frontauth.stores import PendingAuthorization
from frontauth.tokens import digest, new_opaque


async def authorize(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    parameters = split_pairs(request.rel_url.raw_query_string)
    params, repeated = parameters.single, parameters.repeated
    authorization.check_redirect_parameters_unique(parameters.duplicated)
    client = await authorization.check_client(services, params.get("client_id"))
    request[CLIENT_ID] = client.client_id
    redirect_uri = authorization.check_redirect_uri(client, params.get("redirect_uri"))
    # A repeated state has no single value to echo, so its error goes back without one.
    echoed_state = None if "state" in parameters.duplicated else params.get("state") or None
    request[VERIFIED_REDIRECT] = (redirect_uri, echoed_state)
    request[FORM_ACTION] = authorization.redirect_origin(redirect_uri)

    authorization.check_unique(parameters.duplicated)
    authorization.check_response_type(params.get("response_type"))
    state = authorization.check_state(params.get("state"))
    challenge = pkce.check_challenge(params.get("code_challenge"), params.get("code_challenge_method"))
    scope = authorization.check_scope(services, client, params.get("scope"))
    resource = authorization.check_resource(services, repeated.get("resource", []))
    prompt = set(params.get("prompt", "").split())

    cookies: dict[str, str] = {}
    browser = ensure_browser_id(request, cookies)
    pending = PendingAuthorization(
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        redirect_uri_explicit="redirect_uri" in params,
        state=state,
        code_challenge=challenge,
        scope=scope,
        resource=resource,
        browser=digest(browser),
        created_at=int(time.time()),
    )

    session = None if "login" in prompt else await load_session(request, services)
    if session is not None:
        new_scopes = await authorization.consent_needed(
            services, session.subject, pending, frozenset(prompt), client=client
        )
        if new_scopes is None:
            params_out = await authorization.issue_code(services, pending, session.subject, session.auth_time)
            return redirect_with_params(redirect_uri, params_out)
        pending = _with_new_scopes(pending, new_scopes)

    pending_id = new_opaque()
    await services.stores.put_pending(pending_id, pending, services.settings.tokens.pending_ttl)
    page = "consent" if session is not None else "login"
    if session is None and services.settings.mode == "remote":
        # Remote mode: the person signs in at the upstream identity provider.
        response = await remote.redirect_upstream(services, pending_id)
    else:
        response = web.Response(status=302, headers={"Location": f"{services.settings.issuer}/oauth/{page}?pending={pending_id}", **NO_STORE})
    set_cookies(response, services, cookies)
    return response


def _with_new_scopes(pending: PendingAuthorization, new_scopes: list[str]) -> PendingAuthorization:
    return attrs.evolve(pending, new_scopes=" ".join(new_scopes))
