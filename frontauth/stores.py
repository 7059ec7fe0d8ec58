"""Typed stores on top of one storage driver.

Each store owns its key names, record format and TTL; the driver only moves
bytes. Codes, refresh tokens and sessions are stored under the SHA-256 digest
of the credential. Session records are encrypted (frontauth.encryption).

Inside ``RequestReadAhead()``, values that the rate limiter read with its
count (``keep_read_ahead``) serve the first read of their key, so a request
reads its client, session, code or refresh token without a round trip of its
own.

Lifecycles (see frontauth.storage for the atomic operations they rely on):

=================  ==========================  ===================================
record             written by                  consumed by
=================  ==========================  ===================================
pending            /oauth/authorize            take() on consent or denial
code               consent approval            swap() to "consumed" on redemption
refresh            code redemption, refresh    swap() to "rotated" on refresh
rotation           refresh (set_if_absent)     expiry after tokens.refresh_grace
family             revocation (replay, reuse)  expiry after the refresh lifetime
session            sign-in                     expiry, or sign-out
consent            consent approval            expiry (refresh TTL), or revocation
revoked            RFC 7009 revocation         expiry at the access token's exp
client             registration, config        deletion (RFC 7592)
upstream_state     /oauth/authorize (remote)   take() on /oauth/callback
vault              /oauth/callback (remote)    expiry with the session
=================  ==========================  ===================================
"""

from __future__ import annotations

import contextvars
import functools
import logging
import operator
import typing

import attrs

from frontauth import fastjson
from frontauth.encryption import RecordCipher
from frontauth.storage import Driver
from frontauth.tokens import digest

logger = logging.getLogger("frontauth.storage")

R = typing.TypeVar("R")


@functools.cache
def _fields_of(cls: type) -> tuple[tuple[str, ...], typing.Callable[[typing.Any], tuple[typing.Any, ...]]]:
    """Return the field names of a record class and a getter of their values, in that order."""
    names = tuple(field.name for field in attrs.fields(cls))
    return names, operator.attrgetter(*names)


def _dump(record: typing.Any, **changes: typing.Any) -> bytes:
    """Encode a record as a compact JSON object of its fields, with ``changes`` applied.

    The output decodes to the same object as
    ``json.dumps(attrs.asdict(attrs.evolve(record, **changes)))`` for these
    flat records, without asdict's generic walk over every value and without
    building the changed record. ``changes`` must name fields of the record.
    """
    names, values = _fields_of(type(record))
    data = dict(zip(names, values(record)))
    if changes:
        data.update(changes)
    return fastjson.dumps(data)


def _load(cls: type[R], raw: bytes | None) -> R | None:
    if raw is None:
        return None
    data = fastjson.loads(raw)
    # Records written by earlier versions may still carry this derived field.
    data.pop("scope_list", None)
    return cls(**data)


@functools.lru_cache(maxsize=1024)
def _load_client_bytes(raw: bytes) -> ClientRecord:
    return typing.cast(ClientRecord, _load(ClientRecord, raw))


def _load_client(raw: bytes | None) -> ClientRecord | None:
    """Decode a client record, reusing the decoded record for bytes seen before.

    Clients are read on nearly every request and rarely change. The cache
    maps the stored bytes to the frozen record they decode to, so a client
    updated or deleted in storage is never served from it: its new bytes
    (or None) are what the caller read.
    """
    if raw is None:
        return None
    return _load_client_bytes(raw)


# Values read ahead for the current request, by storage key (None: missing).
# Set by RequestReadAhead() and filled by Stores.keep_read_ahead().
_READ_AHEAD: contextvars.ContextVar[dict[str, bytes | None] | None] = contextvars.ContextVar(
    "frontauth_read_ahead", default=None
)


class RequestReadAhead:
    """Let the first read of each key kept with Stores.keep_read_ahead() inside the block use the kept value.

    Wrap one request in it, never more: the kept values were read at the
    start of that request, and a client that RFC 7592 updates or deletes must
    take effect on the next request, on every instance. Each kept value
    serves one read. Writes through Stores to a kept key drop its value.
    """

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        self._token = _READ_AHEAD.set({})

    def __exit__(self, *exc_info: object) -> None:
        _READ_AHEAD.reset(self._token)


@attrs.frozen
class PendingAuthorization:
    """An authorization request waiting for sign-in and consent."""

    client_id: str
    redirect_uri: str
    redirect_uri_explicit: bool  # whether the request carried redirect_uri
    state: str
    code_challenge: str
    scope: str
    resource: str
    browser: str  # digest of the browser cookie that started the request
    created_at: int
    new_scopes: str = ""  # scopes not covered by a remembered consent


@attrs.frozen
class CodeRecord:
    client_id: str
    redirect_uri: str
    redirect_uri_explicit: bool
    code_challenge: str
    scope: str
    resource: str
    subject: str
    auth_time: int
    family_id: str
    consumed: bool = False


@attrs.frozen
class RefreshRecord:
    client_id: str
    subject: str
    scope: str
    resource: str
    family_id: str
    auth_time: int
    expires_at: int
    rotated: bool = False


@attrs.frozen
class FamilyRecord:
    client_id: str
    subject: str
    revoked: bool = False


@attrs.frozen
class SessionRecord:
    subject: str
    auth_time: int
    name: str | None = None
    email: str | None = None


@attrs.frozen
class ClientRecord:
    """A registered client, from configuration or RFC 7591 registration."""

    client_id: str
    redirect_uris: list[str]
    token_endpoint_auth_method: str = "none"
    client_secret_hash: str | None = attrs.field(default=None, repr=False)
    client_name: str | None = None
    client_uri: str | None = None
    logo_uri: str | None = None
    scope: str | None = None
    grant_types: list[str] = attrs.field(factory=lambda: ["authorization_code", "refresh_token"])
    response_types: list[str] = attrs.field(factory=lambda: ["code"])
    application_type: str | None = None
    client_id_issued_at: int | None = None
    dynamic: bool = False
    # RFC 7592: digest of the registration access token; None for configured clients.
    registration_token_hash: str | None = attrs.field(default=None, repr=False)
    # False until the client first redeems a code; an unused registration expires.
    used: bool = True

    @property
    def confidential(self) -> bool:
        return self.token_endpoint_auth_method != "none"


@attrs.frozen
class UpstreamState:
    """What /oauth/callback needs from the request frontauth sent to the upstream provider (remote mode)."""

    pending_id: str
    code_verifier: str = attrs.field(repr=False)
    nonce: str


@attrs.frozen
class VaultRecord:
    """The upstream provider's tokens of one browser session (remote mode)."""

    access_token: str = attrs.field(repr=False)
    expires_at: int | None  # epoch seconds; None when the provider gave no expires_in
    refresh_token: str | None = attrs.field(default=None, repr=False)
    id_token: str | None = attrs.field(default=None, repr=False)
    scope: str = ""
    subject: str = ""


class Stores:
    """Every typed store of frontauth, sharing one driver and key prefix."""

    def __init__(self, driver: Driver, prefix: str, cipher: RecordCipher) -> None:
        self.driver = driver
        self._prefix = prefix
        self._cipher = cipher
        self._undecryptable_logged = False
        # Drivers without the attribute are treated as remote (see storage.Driver).
        self.saves_round_trips: bool = getattr(driver, "saves_round_trips", True)

    def key(self, kind: str, ident: str) -> str:
        return f"{self._prefix}{kind}:{ident}"

    # reads ahead ---------------------------------------------------------------

    def keep_read_ahead(self, keys: typing.Sequence[str], values: typing.Sequence[bytes | None]) -> None:
        """Keep values read with ``Driver.hit_and_get`` for the first read of each key in this request."""
        read_ahead = _READ_AHEAD.get()
        if read_ahead is not None:
            read_ahead.update(zip(keys, values))

    async def _read(self, key: str) -> bytes | None:
        read_ahead = _READ_AHEAD.get()
        if read_ahead is not None and key in read_ahead:
            return read_ahead.pop(key)
        return await self.driver.get(key)

    def _forget(self, key: str) -> None:
        read_ahead = _READ_AHEAD.get()
        if read_ahead is not None:
            read_ahead.pop(key, None)

    # pending authorizations -------------------------------------------------

    async def put_pending(self, pending_id: str, record: PendingAuthorization, ttl: int) -> None:
        await self.driver.set(self.key("pending", pending_id), _dump(record), ttl)

    async def get_pending(self, pending_id: str) -> PendingAuthorization | None:
        """Return the pending authorization; None when missing, expired or already used."""
        return _load(PendingAuthorization, await self.driver.get(self.key("pending", pending_id)))

    async def take_pending(self, pending_id: str) -> PendingAuthorization | None:
        """Remove and return the pending authorization; None for every caller but the first."""
        return _load(PendingAuthorization, await self.driver.take(self.key("pending", pending_id)))

    # authorization codes ----------------------------------------------------

    def code_key(self, code: str) -> str:
        return self.key("code", digest(code))

    async def put_code(self, code: str, record: CodeRecord, ttl: int) -> None:
        key = self.code_key(code)
        self._forget(key)
        await self.driver.set(key, _dump(record), ttl)

    async def get_code(self, code: str) -> CodeRecord | None:
        """Return the code record; None when unknown or expired, ``consumed`` set after redemption."""
        return _load(CodeRecord, await self._read(self.code_key(code)))

    async def consume_code(self, code: str, record: CodeRecord) -> CodeRecord | None:
        """Mark the code consumed and return the record as it was just before.

        Returns None when the code expired meanwhile. Of concurrent callers,
        exactly one gets a record with ``consumed`` False: only that one may
        issue tokens (the swap is atomic in every driver).
        """
        key = self.code_key(code)
        self._forget(key)
        before = await self.driver.swap(key, _dump(record, consumed=True))
        return _load(CodeRecord, before)

    # refresh tokens and families --------------------------------------------

    def refresh_key(self, token: str) -> str:
        return self.key("refresh", digest(token))

    async def put_refresh(self, token: str, record: RefreshRecord, ttl: int) -> None:
        key = self.refresh_key(token)
        self._forget(key)
        await self.driver.set(key, _dump(record), ttl)

    async def get_refresh(self, token: str) -> RefreshRecord | None:
        return _load(RefreshRecord, await self._read(self.refresh_key(token)))

    async def rotate_refresh(self, token: str, record: RefreshRecord) -> RefreshRecord | None:
        """Mark the refresh token rotated; return the record as it was before.

        Returns None when the token is gone. A returned record with
        ``rotated`` True means another request rotated it first: reuse.
        """
        key = self.refresh_key(token)
        self._forget(key)
        before = await self.driver.swap(key, _dump(record, rotated=True))
        return _load(RefreshRecord, before)

    async def claim_rotation(self, token: str, successor: bytes, ttl: float) -> bool:
        """Record ``successor`` as the one result of refreshing ``token``, for ``ttl`` seconds.

        Returns False when another request claimed the rotation first; the
        driver's set-if-absent makes exactly one concurrent caller win. The
        successor holds fresh tokens, so it is stored encrypted and bound to
        its key.
        """
        key = self.key("rotation", digest(token))
        return await self.driver.set_if_absent(key, self._cipher.seal(successor, key.encode()), ttl)

    async def get_rotation(self, token: str) -> bytes | None:
        """Return the successor recorded for ``token``; None once the grace window is over."""
        key = self.key("rotation", digest(token))
        return self._open(key, await self.driver.get(key))

    async def delete_refresh(self, token: str) -> None:
        key = self.refresh_key(token)
        self._forget(key)
        await self.driver.delete(key)

    async def family_revoked(self, family_id: str) -> bool:
        """True when the family was revoked (code replay, refresh reuse or RFC 7009)."""
        return await self.driver.get(self.key("family", family_id)) is not None

    async def revoke_family(self, family_id: str, client_id: str, subject: str, ttl: int) -> None:
        """Record the family as revoked for ``ttl`` seconds.

        NOTE: the family key exists only once revoked. Every token of a family
        expires within the refresh lifetime of its issuance, so a marker kept
        for that long outlives every token it must stop, including tokens
        still being issued by a concurrent request when the marker is written.
        """
        record = FamilyRecord(client_id=client_id, subject=subject, revoked=True)
        await self.driver.set(self.key("family", family_id), _dump(record), ttl)

    async def revoke_access_token(self, jti: str, ttl: float) -> None:
        if ttl > 0:
            await self.driver.set(self.key("revoked", jti), b"1", ttl)

    async def access_token_revoked(self, jti: str) -> bool:
        return await self.driver.get(self.key("revoked", jti)) is not None

    # browser sessions (encrypted) -------------------------------------------

    def _open(self, key: str, raw: bytes | None) -> bytes | None:
        if raw is None:
            return None
        plain = self._cipher.open(raw, key.encode())
        if plain is None and not self._undecryptable_logged:
            self._undecryptable_logged = True
            logger.error(
                "a stored record under %s cannot be decrypted: instances sharing this storage "
                "must share server.secret and MACHINE_ID; treating such records as absent",
                key.rsplit(":", 1)[0],
            )
        return plain

    def session_key(self, session_id: str) -> str:
        return self.key("session", digest(session_id))

    async def put_session(self, session_id: str, record: SessionRecord, ttl: int) -> None:
        key = self.session_key(session_id)
        self._forget(key)
        await self.driver.set(key, self._cipher.seal(_dump(record), key.encode()), ttl)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        key = self.session_key(session_id)
        return _load(SessionRecord, self._open(key, await self._read(key)))

    async def delete_session(self, session_id: str) -> None:
        key = self.session_key(session_id)
        self._forget(key)
        await self.driver.delete(key)

    # consents ---------------------------------------------------------------

    def _consent_key(self, subject: str, client_id: str, resource: str) -> str:
        return self.key("consent", digest(f"{subject}\x00{client_id}\x00{resource}"))

    async def get_consent(self, subject: str, client_id: str, resource: str) -> set[str]:
        """Return the scopes the user already approved for this client at this resource."""
        raw = await self.driver.get(self._consent_key(subject, client_id, resource))
        return set(fastjson.loads(raw)) if raw else set()

    async def put_consent(self, subject: str, client_id: str, resource: str, scopes: set[str], ttl: int) -> None:
        raw = fastjson.dumps(sorted(scopes))
        await self.driver.set(self._consent_key(subject, client_id, resource), raw, ttl)

    # clients ----------------------------------------------------------------

    def client_key(self, client_id: str) -> str:
        return self.key("client", client_id)

    async def get_client(self, client_id: str) -> ClientRecord | None:
        return _load_client(await self._read(self.client_key(client_id)))

    async def create_client(self, record: ClientRecord, ttl: float | None = None) -> bool:
        """Store a new client, expiring after ``ttl`` seconds unless None; False when the client_id is taken."""
        key = self.client_key(record.client_id)
        self._forget(key)
        return await self.driver.set_if_absent(key, _dump(record), ttl)

    async def replace_client(self, record: ClientRecord) -> bool:
        """Replace a stored client, keeping its remaining TTL; False when it no longer exists."""
        key = self.client_key(record.client_id)
        self._forget(key)
        return await self.driver.swap(key, _dump(record)) is not None

    async def keep_client(self, record: ClientRecord) -> None:
        """Store the client as used and without expiry, so it outlives the unused-registration TTL."""
        key = self.client_key(record.client_id)
        self._forget(key)
        await self.driver.set(key, _dump(attrs.evolve(record, used=True)), None)

    async def delete_client(self, client_id: str) -> bool:
        """Delete a stored client; False when it did not exist."""
        key = self.client_key(client_id)
        self._forget(key)
        return await self.driver.delete(key)

    # remote mode: upstream state and the vault (encrypted) ---------------------

    async def put_upstream_state(self, state: str, record: UpstreamState, ttl: int) -> None:
        key = self.key("upstream_state", digest(state))
        await self.driver.set(key, self._cipher.seal(_dump(record), key.encode()), ttl)

    async def take_upstream_state(self, state: str) -> UpstreamState | None:
        """Remove and return the upstream state; None when unknown, expired or already used."""
        key = self.key("upstream_state", digest(state))
        return _load(UpstreamState, self._open(key, await self.driver.take(key)))

    def _vault_key(self, session_id: str) -> str:
        return self.key("vault", digest(session_id))

    async def put_vault(self, session_id: str, record: VaultRecord, ttl: int) -> None:
        key = self._vault_key(session_id)
        await self.driver.set(key, self._cipher.seal(_dump(record), key.encode()), ttl)

    async def replace_vault(self, session_id: str, record: VaultRecord) -> None:
        """Replace the vault record of a session, keeping the session's remaining TTL."""
        key = self._vault_key(session_id)
        await self.driver.swap(key, self._cipher.seal(_dump(record), key.encode()))

    async def get_vault(self, session_id: str) -> VaultRecord | None:
        """Return the upstream tokens of a session; None when missing, expired or undecryptable."""
        key = self._vault_key(session_id)
        return _load(VaultRecord, self._open(key, await self.driver.get(key)))
