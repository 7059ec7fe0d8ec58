"""The authorization_code grant (RFC 6749 §4.1.3, OAuth 2.1 §4.1.3, RFC 7636 §4.6).

Steps: check_parameters, load_code, check_binding (client, redirect_uri,
PKCE), mint the tokens, consume (atomic swap; the loser of a race or a replay
revokes the family) while storing the new refresh record, respond with the
tokens.
"""

from __future__ import annotations

import asyncio
import hmac

from frontauth import pkce
from frontauth.grants.issue import prepare_tokens, store_refresh
from frontauth.identifiers import same_identifier
from frontauth.errors import InvalidGrant, InvalidRequest, InvalidTarget
from frontauth.services import Services
from frontauth.stores import ClientRecord, CodeRecord

GRANT_TYPE = "authorization_code"
PARAMETERS = frozenset({"grant_type", "code", "redirect_uri", "code_verifier", "client_id", "client_secret", "resource"})


def check_parameters(form: dict[str, str]) -> str:
    code = form.get("code")
    if not code:
        raise InvalidRequest("code is required")
    return code


def check_binding(record: CodeRecord, client: ClientRecord, form: dict[str, str]) -> None:
    """Check that the code was issued to this client, for this redirect_uri and verifier."""
    if not hmac.compare_digest(record.client_id, client.client_id):
        raise InvalidGrant("the code was issued to another client")
    redirect_uri = form.get("redirect_uri")
    # RFC 6749 §4.1.3: redirect_uri must be present and identical when the
    # authorization request carried one.
    if redirect_uri is None and record.redirect_uri_explicit:
        raise InvalidRequest("redirect_uri is required: the authorization request included it")
    if redirect_uri is not None and redirect_uri != record.redirect_uri:
        raise InvalidGrant("redirect_uri does not match the authorization request")
    resource = form.get("resource")
    if resource is not None and not same_identifier(resource, record.resource):
        # RFC 8707 §2: a resource the grant does not cover is invalid_target.
        raise InvalidTarget("resource does not match the authorization request")
    pkce.check_verifier(form.get("code_verifier"), record.code_challenge)


async def revoke_replayed(services: Services, record: CodeRecord) -> None:
    # SECURITY: RFC 6749 §4.1.2: a code used twice revokes the tokens issued from it.
    await services.stores.revoke_family(
        record.family_id, record.client_id, record.subject, services.settings.refresh_ttl
    )


async def handle(services: Services, client: ClientRecord, form: dict[str, str]) -> dict[str, object]:
    code = check_parameters(form)
    record = await services.stores.get_code(code)
    if record is None:
        raise InvalidGrant("the code is invalid or expired")
    if record.consumed:
        await revoke_replayed(services, record)
        raise InvalidGrant("the code was already used", detail="code replay: family revoked")
    check_binding(record, client, form)

    prepared = prepare_tokens(
        services,
        client_id=record.client_id,
        subject=record.subject,
        scope=record.scope,
        resource=record.resource,
        family_id=record.family_id,
        auth_time=record.auth_time,
    )
    # The swap decides which redemption wins. The new refresh record is written
    # at the same time (one pipeline on a single Redis server) and deleted when
    # the swap loses, which is safe because no client has seen that token yet.
    if services.stores.saves_round_trips:
        before, _ = await asyncio.gather(
            services.stores.consume_code(code, record), store_refresh(services, prepared)
        )
    else:
        # In process there is no round trip to share, and gather's tasks cost more than they save.
        before = await services.stores.consume_code(code, record)
        await store_refresh(services, prepared)
    if before is None or before.consumed:
        await services.stores.delete_refresh(prepared.refresh_token)
    if before is None:
        raise InvalidGrant("the code is invalid or expired")
    if before.consumed:
        await revoke_replayed(services, before)
        raise InvalidGrant("the code was already used", detail="concurrent redemption: family revoked")

    if not client.used:
        # The first redeemed code ends the unused-registration expiry.
        await services.stores.keep_client(client)
    return prepared.body
