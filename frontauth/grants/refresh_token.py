"""The refresh_token grant (RFC 6749 §6) with rotation and reuse detection.

Steps: check_parameters, load_refresh, check_binding (client, family, scope),
rotate, respond with a new pair. A refresh token presented after it was
rotated revokes its whole family (RFC 9700 §4.14.2), so a stolen token and its
legitimate twin both stop working.

Grace window (``tokens.refresh_grace`` seconds, 0 turns it off): a client that
lost the response, or retried from several addresses at once, presents the
same token again within seconds. Inside the window the same client with the
same request gets the same successor tokens back instead of a revoked family.
Rotation with a window runs in this order, every step on one key:

1. issue the successor (its refresh record is stored, but nobody knows it yet);
2. claim the rotation: set-if-absent of ``rotation:{digest}``, holding the
   encrypted successor response, with the window as its TTL. Exactly one
   concurrent request wins. The losers delete their own unused successor and
   return the winner's;
3. swap the presented record to "rotated", for reuse detection after the window.

Outside the window the rotation key has expired, so a rotated token revokes
the family exactly as without a window.
"""

from __future__ import annotations

import hmac
import logging
from json.encoder import encode_basestring_ascii as _json_string

from frontauth import fastjson
from frontauth.errors import InvalidGrant, InvalidRequest, InvalidScope, InvalidTarget
from frontauth.grants.issue import prepare_tokens, store_refresh
from frontauth.identifiers import same_identifier
from frontauth.services import Services
from frontauth.stores import ClientRecord, RefreshRecord
from frontauth.tokens import digest

logger = logging.getLogger("frontauth.oauth")

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


def request_fingerprint(client: ClientRecord, form: dict[str, str]) -> str:
    """Return a digest of what a retry must repeat: the client, scope and resource."""
    # Instances of different versions behind one store must compute the same
    # fingerprint during a rolling upgrade, so the text stays that of
    # json.dumps([client_id, scope, resource]). That is JSON strings with
    # non-ASCII escaped, null for a missing value and ", " between the items.
    items = (client.client_id, form.get("scope"), form.get("resource"))
    return digest("[" + ", ".join("null" if item is None else _json_string(item) for item in items) + "]")


async def load_retry_response(
    services: Services, client: ClientRecord, token: str, form: dict[str, str]
) -> dict[str, object] | None:
    """Return the successor response again when this request retries a refresh inside the window.

    Returns None when the window is over or the request is not a retry (another
    client, scope or resource): the caller then treats the token as reused.
    """
    raw = await services.stores.get_rotation(token)
    if raw is None:
        return None
    successor = fastjson.loads(raw)
    if not hmac.compare_digest(successor["request"], request_fingerprint(client, form)):
        return None
    response: dict[str, object] = successor["response"]
    # SECURITY: once the successor was itself used, the presented token is no
    # lost response any more. Handing the successor out again would let a
    # stolen token walk forward to the live one (RFC 9700 §4.14.2).
    successor_record = await services.stores.get_refresh(str(response["refresh_token"]))
    if successor_record is None or successor_record.rotated:
        return None
    # The access token is the same one, so its remaining lifetime has shrunk.
    elapsed = max(0, int(services.clock() - successor["issued_at"]))
    response["expires_in"] = max(0, int(response["expires_in"]) - elapsed)  # type: ignore[call-overload]
    return response


async def rotate_with_grace(
    services: Services, client: ClientRecord, token: str, record: RefreshRecord, form: dict[str, str], scope: str
) -> dict[str, object]:
    """Rotate the token and record the successor for retries inside the grace window."""
    response = await issue(services, record, scope)
    successor = {
        "request": request_fingerprint(client, form),
        "issued_at": services.clock(),
        "response": response,
    }
    claimed = await services.stores.claim_rotation(
        token, fastjson.dumps(successor), services.settings.tokens.refresh_grace
    )
    if not claimed:
        # Another request rotated the token first. No client has received this
        # successor, so delete it and return the winner's tokens as to a retry.
        await services.stores.delete_refresh(str(response["refresh_token"]))
        retry = await load_retry_response(services, client, token, form)
        if retry is None:
            await revoke(services, record)
            raise InvalidGrant("the refresh token was already used", detail="concurrent refresh: family revoked")
        return retry
    await services.stores.rotate_refresh(token, record)
    return response


async def rotate_once(services: Services, token: str, record: RefreshRecord, scope: str) -> dict[str, object]:
    """Rotate the token without a grace window: the first request wins, any other revokes the family."""
    before = await services.stores.rotate_refresh(token, record)
    if before is None:
        raise InvalidGrant("the refresh token is invalid or expired")
    if before.rotated:
        await revoke(services, before)
        raise InvalidGrant("the refresh token was already used", detail="concurrent refresh: family revoked")
    return await issue(services, record, scope)


async def issue(services: Services, record: RefreshRecord, scope: str) -> dict[str, object]:
    """Mint the successor pair of ``record`` at ``scope`` and store its refresh record; return the body."""
    prepared = prepare_tokens(
        services,
        client_id=record.client_id,
        subject=record.subject,
        scope=scope,
        resource=record.resource,
        family_id=record.family_id,
        auth_time=record.auth_time,
        refresh_scope=record.scope,
    )
    await store_refresh(services, prepared)
    return prepared.body


async def handle(services: Services, client: ClientRecord, form: dict[str, str]) -> dict[str, object]:
    token = check_parameters(form)
    record = await services.stores.get_refresh(token)
    if record is None:
        raise InvalidGrant("the refresh token is invalid or expired")
    if not hmac.compare_digest(record.client_id, client.client_id):
        # Not rotated: another client must not be able to burn this token.
        raise InvalidGrant("the refresh token was issued to another client")
    grace = services.settings.tokens.refresh_grace
    if record.rotated:
        retry = await load_retry_response(services, client, token, form) if grace > 0 else None
        if retry is not None and not await services.stores.family_revoked(record.family_id):
            return retry
        # SECURITY: RFC 9700 §4.14.2: reuse of a rotated token revokes the family.
        logger.warning(
            "refresh token reuse for client_id=%s: revoking the token family %s", record.client_id, record.family_id
        )
        await revoke(services, record)
        raise InvalidGrant("the refresh token was already used", detail="refresh reuse: family revoked")
    if await services.stores.family_revoked(record.family_id):
        raise InvalidGrant("the refresh token was revoked")
    resource = form.get("resource")
    if resource is not None and not same_identifier(resource, record.resource):
        # RFC 8707 §2: a resource the grant does not cover is invalid_target.
        raise InvalidTarget("resource does not match the original grant")
    scope = check_scope(record, form.get("scope"))
    if grace > 0:
        return await rotate_with_grace(services, client, token, record, form, scope)
    return await rotate_once(services, token, record, scope)
