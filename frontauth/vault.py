"""Reading the upstream tokens of a session from the vault (remote mode).

:meth:`UpstreamVault.read` returns the session's upstream tokens. When the
access token expires within ``refresh.skew_seconds``, it is refreshed at the
provider first, and the new tokens replace the old ones in the vault.

Concurrent reads of one session in one process share a single refresh: the
first read starts it and the others wait for its result. A failed refresh
raises :class:`RefreshFailed` to every waiting reader and is logged.
NOTE: two instances that read the same session at the same moment may each
refresh once; a provider that rotates refresh tokens with reuse detection
could then revoke the session's tokens.
"""

from __future__ import annotations

import asyncio
import logging
import time
import typing

import attrs

from frontauth import remote
from frontauth.stores import Stores, VaultRecord
from frontauth.upstream import Upstream

logger = logging.getLogger("frontauth.oauth")


class RefreshFailed(Exception):
    """The upstream access token is about to expire and could not be refreshed."""


class UpstreamVault:
    """The vault of upstream tokens, with refresh on read.

    Args:
        stores: the typed stores holding the vault records.
        upstream: the provider that refreshes tokens.
        skew: seconds before expiry from which a read refreshes the access token.
        clock: wall-clock time in seconds; tests pass their own.
    """

    def __init__(
        self, stores: Stores, upstream: Upstream, skew: int, clock: typing.Callable[[], float] = time.time
    ) -> None:
        self._stores = stores
        self._upstream = upstream
        self._skew = skew
        self._clock = clock
        self._refreshing: dict[str, asyncio.Task[VaultRecord]] = {}
        self.refresh_count = 0
        """Number of refresh requests sent to the provider."""

    async def read(self, session_id: str) -> VaultRecord | None:
        """Return the session's upstream tokens, refreshed first if they expire within the skew.

        Returns:
            The record, or None when the session has no vault record.

        Raises:
            RefreshFailed: the token needed a refresh and the refresh failed,
                or there is no refresh token to refresh it with.
        """
        record = await self._stores.get_vault(session_id)
        if record is None or not self._expiring(record):
            return record
        task = self._refreshing.get(session_id)
        if task is None:
            task = asyncio.create_task(self._refresh(session_id, record))
            self._refreshing[session_id] = task
            task.add_done_callback(lambda _: self._refreshing.pop(session_id, None))
        return await asyncio.shield(task)

    def _expiring(self, record: VaultRecord) -> bool:
        return record.expires_at is not None and record.expires_at - self._clock() <= self._skew

    async def _refresh(self, session_id: str, record: VaultRecord) -> VaultRecord:
        if record.refresh_token is None:
            logger.warning("upstream access token of subject %s expires and the provider gave no refresh token",
                           record.subject)
            raise RefreshFailed("the upstream access token expires and there is no refresh token")
        self.refresh_count += 1
        try:
            tokens = await remote.refresh_tokens(self._upstream, record.refresh_token)
        except remote.UpstreamError as exc:
            logger.warning("upstream token refresh failed for subject %s: %s", record.subject, exc)
            raise RefreshFailed(f"the upstream token refresh failed: {exc}") from None
        refreshed = remote.vault_record(tokens, record.subject, self._clock())
        # RFC 6749 §6: the provider may keep the refresh token and ID token unchanged.
        refreshed = attrs.evolve(
            refreshed,
            refresh_token=refreshed.refresh_token or record.refresh_token,
            id_token=refreshed.id_token or record.id_token,
            scope=refreshed.scope or record.scope,
        )
        await self._stores.replace_vault(session_id, refreshed)
        return refreshed
