"""The redirection endpoint of remote mode: the upstream identity provider returns here.

Steps: take the upstream state (single use), load the pending authorization
and check that the same browser returns. From then on, errors go back to the
MCP client's redirect URI. Check ``iss`` (RFC 9207), then either map the
provider's error or exchange the code and validate the ID token. When the
provider sent no ID token, the subject comes from userinfo. Read userinfo if
configured, start the session with the upstream tokens in the vault, and
continue with consent or the code as local mode does after sign-in.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from frontauth import authorization, remote
from frontauth.appkeys import SERVICES
from frontauth.browser import set_cookies, start_session
from frontauth.endpoints.pending import check_browser, expired, mark_verified
from frontauth.errors import PageError, ServerError
from frontauth.params import query_params
from frontauth.responses import NO_STORE, redirect_with_params
from frontauth.services import Services
from frontauth.stores import PendingAuthorization, SessionRecord

logger = logging.getLogger("frontauth.oauth")

MAX_PARAMETER = 4096


async def callback(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    params, _ = query_params(request)
    state = params.get("state", "")
    if not state or len(state) > MAX_PARAMETER:
        raise PageError("Invalid sign-in response", "The identity provider's response carries no valid state.")
    # SECURITY: taking the state makes the callback single use, and its absence
    # rejects responses this server did not ask for (CSRF on the callback).
    upstream_state = await services.stores.take_upstream_state(state)
    if upstream_state is None:
        raise expired()
    pending = await services.stores.get_pending(upstream_state.pending_id)
    if pending is None:
        raise expired()
    check_browser(request, pending)
    mark_verified(request, pending)

    try:
        identity, tokens = await _sign_in_upstream(services, params, upstream_state)
    except remote.UpstreamError as exc:
        logger.info("remote sign-in failed for client_id=%s: %s", pending.client_id, exc)
        await services.stores.take_pending(upstream_state.pending_id)
        raise exc.error from None
    return await _continue(services, upstream_state.pending_id, pending, identity, tokens)


async def _sign_in_upstream(
    services: Services, params: dict[str, str], upstream_state: remote.UpstreamState
) -> tuple[dict[str, object], dict[str, object]]:
    """Return the identity claims and the token response of a successful upstream sign-in."""
    upstream = remote.upstream_of(services)
    issuer = params.get("iss")
    # SECURITY: RFC 9207 §2.4: a response that names another issuer is a mix-up.
    if issuer is not None and issuer != upstream.issuer:
        raise remote.UpstreamError(
            ServerError("the sign-in response came from an unexpected identity provider", redirectable=True),
            "upstream response names another issuer",
        )
    if "error" in params:
        raise remote.error_from_callback(params["error"], params.get("error_description"))
    code = params.get("code", "")
    if not code or len(code) > MAX_PARAMETER:
        raise remote.UpstreamError(
            ServerError("the identity provider returned no authorization code", redirectable=True),
            "upstream response has no code",
        )
    tokens = await remote.exchange_code(services, code, upstream_state)
    id_token = tokens.get("id_token")
    if not isinstance(id_token, str):
        # A plain OAuth 2.0 provider (no openid scope) returns no ID token;
        # the subject then comes from its userinfo endpoint.
        claims = await remote.fetch_userinfo(services, tokens["access_token"], None)
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise remote.UpstreamError(
                ServerError("the identity provider returned no ID token", redirectable=True),
                "upstream token response has no id_token and userinfo names no subject",
            )
        return claims, tokens
    claims = await remote.validate_id_token(services, id_token, upstream_state.nonce)
    if upstream.settings.use_userinfo:
        extra = await remote.fetch_userinfo(services, tokens["access_token"], claims["sub"])
        claims = {**extra, **claims}
    return claims, tokens


async def _continue(
    services: Services,
    pending_id: str,
    pending: PendingAuthorization,
    identity: dict[str, object],
    tokens: dict[str, object],
) -> web.StreamResponse:
    """Start the session, keep the upstream tokens in the vault, then consent or issue the code."""
    now = int(time.time())
    subject = str(identity["sub"])
    name = identity.get("name")
    email = identity.get("email")
    record = SessionRecord(
        subject=subject,
        auth_time=now,
        name=name if isinstance(name, str) else None,
        email=email if isinstance(email, str) else None,
    )
    cookies: dict[str, str] = {}
    await start_session(services, record, cookies)
    session_id = cookies[services.settings.session.cookie_name]
    await services.stores.put_vault(session_id, remote.vault_record(tokens, subject, now), services.settings.session.ttl)

    if await authorization.consent_needed(services, subject, pending) is not None:
        response: web.StreamResponse = web.Response(
            status=303,
            headers={"Location": f"{services.settings.issuer}/oauth/consent?pending={pending_id}", **NO_STORE},
        )
    else:
        taken = await services.stores.take_pending(pending_id)
        if taken is None:
            raise expired()
        response = redirect_with_params(taken.redirect_uri, await authorization.issue_code(services, taken, subject, now))
    set_cookies(response, services, cookies)
    return response
