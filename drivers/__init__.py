"""Storage drivers, chosen by the scheme of ``storage.url``.

Each driver implements :class:`frontauth.storage.Driver`. Drivers are imported
lazily so that an installation without the Redis client still serves
``memory://``.
"""

from __future__ import annotations

import importlib
import typing
import urllib.parse

if typing.TYPE_CHECKING:
    from frontauth.config import StorageSettings
    from frontauth.storage import Driver

# scheme -> (module, factory function)
DRIVERS: dict[str, tuple[str, str]] = {
    "memory": ("frontauth.drivers.memory", "open_memory"),
    "redis": ("frontauth.drivers.redis", "open_redis"),
    "rediss": ("frontauth.drivers.redis", "open_redis"),
    "redis+cluster": ("frontauth.drivers.redis_cluster", "open_redis_cluster"),
    "rediss+cluster": ("frontauth.drivers.redis_cluster", "open_redis_cluster"),
    "sqlite": ("frontauth.drivers.sqlite", "open_sqlite"),
}


class UnknownDriver(ValueError):
    """The storage URL names a scheme that no driver handles."""


def supported_schemes() -> list[str]:
    """Return the URL schemes that have a driver, sorted."""
    return sorted(DRIVERS)


def check_url(url: str) -> str:
    """Return the scheme of a storage URL, or raise UnknownDriver."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in DRIVERS:
        raise UnknownDriver(
            f"unknown storage driver {scheme or url!r}; expected a URL starting with one of "
            + ", ".join(f"{name}://" for name in supported_schemes())
        )
    return scheme


async def open_driver(settings: StorageSettings) -> Driver:
    """Open the driver that ``settings.url`` names and return it connected."""
    module_name, factory_name = DRIVERS[check_url(settings.url)]
    module = importlib.import_module(module_name)
    factory = getattr(module, factory_name)
    return await factory(settings)
