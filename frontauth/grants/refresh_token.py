"""The refresh_token grant (RFC 6749 §6) with rotation and reuse detection.

Steps: check_parameters, load_refresh, check_binding (client, family, scope),
rotate (atomic swap to "rotated"), respond with a new pair. A refresh token
presented after it was rotated revokes its whole family (RFC 9700 §4.14.2),
so a stolen token and its legitimate twin both stop working.
"""

from __future__ import annotations

import hmac

from frontauth.grants.issue import issue_tokens
from frontauth.errors import InvalidGrant, InvalidRequest, InvalidScope, InvalidTarget
from frontauth.services import Services
from frontauth.stores import ClientRecord, RefreshRecord

GRANT_TYPE = "refresh_token"
PARAMETERS = frozenset({"grant_type", "refresh_token", "scope", "resource", "client_id", "client_secret"})


def check_parameters(form: dict[str, str]) -> str:
    token = form.get("refresh_token")
    if not token:
        raise InvalidRequest("refresh_token is required")
    return token


def check_scope(record: RefreshRecord, requested: str | None) -> str:
    """RFC 6749 §6: a refresh may narrow the scope, never widen it."""
    if requested is None:
        return record.scope
    wanted = requested.split()
    if not wanted:
        raise InvalidScope("scope must not be empty")
    granted = set(record.scope.split())
    extra = [s for s in wanted if s not in granted]
    if extra:
        raise InvalidScope("the requested scope exceeds the scope originally granted")
    return " ".join(dict.fromkeys(wanted))


async def revoke(services: Services, record: RefreshRecord) -> None:
    await services.stores.revoke_family(
        record.family_id, record.client_id, record.subject, services.settings.refresh_ttl
    )


async def handle(services: Services, client: ClientRecord, form: dict[str, str]) -> dict[str, object]:
    token = check_parameters(form)
    record = await services.stores.get_refresh(token)
    if record is None:
        raise InvalidGrant("the refresh token is invalid or expired")
    if not hmac.compare_digest(record.client_id, client.client_id):
        # Not rotated: another client must not be able to burn this token.
        raise InvalidGrant("the refresh token was issued to another client")
    if record.rotated:
        # SECURITY: RFC 9700 §4.14.2: reuse of a rotated token revokes the family.
        await revoke(services, record)
        raise InvalidGrant("the refresh token was already used", detail="refresh reuse: family revoked")
    if await services.stores.family_revoked(record.family_id):
        raise InvalidGrant("the refresh token was revoked")
    resource = form.get("resource")
    if resource is not None and resource != record.resource:
        # RFC 8707 §2: a resource the grant does not cover is invalid_target.
        raise InvalidTarget("resource does not match the original grant")
    scope = check_scope(record, form.get("scope"))

    before = await services.stores.rotate_refresh(token, record)
    if before is None:
        raise InvalidGrant("the refresh token is invalid or expired")
    if before.rotated:
        await revoke(services, before)
        raise InvalidGrant("the refresh token was already used", detail="concurrent refresh: family revoked")

    return await issue_tokens(
        services,
        client_id=record.client_id,
        subject=record.subject,
        scope=scope,
        resource=record.resource,
        family_id=record.family_id,
        auth_time=record.auth_time,
        refresh_scope=record.scope,
    )
