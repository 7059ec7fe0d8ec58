"""Everything a request handler needs, built once at start-up from the settings."""

from __future__ import annotations

import logging
import os
import time
import typing

import attrs

from frontauth import keys as signing_keys
from frontauth.clients import ClientRegistry
from frontauth.config import Settings
from frontauth.encryption import RecordCipher, derive_key
from frontauth.storage import Driver
from frontauth.stores import Stores
from frontauth.tokens import AccessTokenMinter
from frontauth.users import UserDirectory

logger = logging.getLogger("frontauth.cli")


@attrs.define
class Services:
    settings: Settings
    keys: signing_keys.SigningKeys
    driver: Driver
    stores: Stores
    clients: ClientRegistry
    users: UserDirectory
    minter: AccessTokenMinter
    csrf_key: bytes = attrs.field(repr=False)
    clock: typing.Callable[[], float] = time.time


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


def build(settings: Settings, driver: Driver, keys: signing_keys.SigningKeys | None = None) -> Services:
    """Assemble the services around an opened driver."""
    keys = keys or signing_keys.load(settings)
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
        minter=AccessTokenMinter(keys, settings.issuer, settings.access_ttl),
        csrf_key=derive_key(secret, settings.server.machine_id, b"csrf v1"),
    )
