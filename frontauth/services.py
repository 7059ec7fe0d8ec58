"""Everything a request handler needs, built once at start-up from the settings."""

from __future__ import annotations

import logging
import os
import time
import typing

import attrs

from frontauth import keys as signing_keys
from frontauth.clients import ClientRegistry
from frontauth.config import ISSUING_MODES, Settings
from frontauth.encryption import RecordCipher, derive_key
from frontauth.storage import Driver
from frontauth.stores import Stores
from frontauth.tokens import AccessTokenMinter
from frontauth.users import UserDirectory

if typing.TYPE_CHECKING:
    from frontauth.resource.verifier import BearerVerifier
    from frontauth.upstream import Upstream
    from frontauth.vault import UpstreamVault

logger = logging.getLogger("frontauth.cli")


@attrs.define
class Services:
    settings: Settings
    keys: signing_keys.SigningKeys | None  # None in transparent and public modes, which sign nothing
    driver: Driver
    stores: Stores
    clients: ClientRegistry
    users: UserDirectory
    minter: AccessTokenMinter | None  # None in transparent and public modes
    csrf_key: bytes = attrs.field(repr=False)
    clock: typing.Callable[[], float] = time.time
    upstream: Upstream | None = None
    upstream_verifier: BearerVerifier | None = None  # transparent mode
    vault: UpstreamVault | None = None  # remote mode


def load_server_secret(settings: Settings) -> str:
    """Return server.secret, or in development the one kept in state_dir (created once)."""
    if settings.server.secret is not None:
        return settings.server.secret
    path = os.path.join(settings.server.state_dir, "server-secret")
    try:
        with open(path, encoding="utf-8") as fh:
            secret = fh.read().strip()
        if len(secret) >= 32:
            return secret
    except FileNotFoundError:
        pass
    secret = signing_keys.random_secret()
    os.makedirs(settings.server.state_dir, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secret)
    logger.warning("generated a development server secret in %s; set server.secret outside development", path)
    return secret


def build(
    settings: Settings,
    driver: Driver,
    keys: signing_keys.SigningKeys | None = None,
    upstream: Upstream | None = None,
) -> Services:
    """Assemble the services around an opened driver and, in the upstream modes, the connected provider."""
    if keys is None and settings.mode in ISSUING_MODES:
        keys = signing_keys.load(settings)
    from frontauth.transparent import build_verifier
    from frontauth.vault import UpstreamVault

    secret = load_server_secret(settings)
    cipher = RecordCipher(secret, settings.server.machine_id)
    stores = Stores(driver, settings.storage.prefix, cipher)
    return Services(
        settings=settings,
        keys=keys,
        driver=driver,
        stores=stores,
        clients=ClientRegistry(settings, stores),
        users=UserDirectory(settings),
        minter=AccessTokenMinter(keys, settings.issuer, settings.access_ttl) if keys is not None else None,
        csrf_key=derive_key(secret, settings.server.machine_id, b"csrf v1"),
        upstream=upstream,
        upstream_verifier=build_verifier(settings, upstream) if upstream and settings.mode == "transparent" else None,
        vault=UpstreamVault(stores, upstream, settings.refresh.skew_seconds) if upstream and settings.mode == "remote" else None,
    )
