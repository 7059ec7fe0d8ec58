"""The token response both grants return (RFC 6749 §5.1)."""

from __future__ import annotations

import attrs

from frontauth.services import Services
from frontauth.stores import RefreshRecord
from frontauth.tokens import new_opaque


@attrs.frozen
class PreparedTokens:
    """A minted access token and a refresh token whose record is not stored yet."""

    body: dict[str, object] = attrs.field(repr=False)
    refresh_token: str = attrs.field(repr=False)
    record: RefreshRecord
    lifetime: int


def prepare_tokens(
    services: Services,
    *,
    client_id: str,
    subject: str,
    scope: str,
    resource: str,
    family_id: str,
    auth_time: int,
    refresh_scope: str | None = None,
) -> PreparedTokens:
    """Mint an access token and a new refresh token of the family, without storing anything.

    ``scope`` goes into the access token and the response. The refresh token
    gets ``refresh_scope`` when given: RFC 6749 §6 keeps a rotated refresh
    token at the scope of the one presented, even when the refresh request
    narrowed the access token's scope. The caller stores ``record`` under
    ``refresh_token`` before it sends ``body`` to anyone.
    """
    access = services.minter.mint(
        subject=subject,
        client_id=client_id,
        scope=scope,
        audience=resource,
        family_id=family_id,
        auth_time=auth_time,
    )
    refresh_token = new_opaque()
    lifetime = services.settings.refresh_ttl
    record = RefreshRecord(
        client_id=client_id,
        subject=subject,
        scope=refresh_scope or scope,
        resource=resource,
        family_id=family_id,
        auth_time=auth_time,
        expires_at=int(services.clock()) + lifetime,
    )
    body: dict[str, object] = {
        "access_token": access.token,
        "token_type": "Bearer",
        "expires_in": access.expires_in,
        "refresh_token": refresh_token,
        "scope": scope,
    }
    return PreparedTokens(body=body, refresh_token=refresh_token, record=record, lifetime=lifetime)


async def store_refresh(services: Services, prepared: PreparedTokens) -> None:
    """Store the refresh record of prepared tokens, for the refresh token's lifetime."""
    await services.stores.put_refresh(prepared.refresh_token, prepared.record, prepared.lifetime)
