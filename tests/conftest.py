"""Shared pytest fixtures. Fixture modules register themselves here."""

from __future__ import annotations

import typing

import pytest

from frontauth import config
from frontauth.app import create_app
from frontauth.drivers.memory import MemoryDriver

pytest_plugins: list[str] = ["tests.redis_servers"]


@pytest.fixture
def make_settings(tmp_path: typing.Any) -> typing.Callable[..., config.Settings]:
    """Build validated settings for a test, with state kept in the test's folder."""

    def make(toml: str = "", **environ: str) -> config.Settings:
        path = tmp_path / "frontauth.toml"
        path.write_text(toml)
        env = {"FRONTAUTH_SERVER_STATE_DIR": str(tmp_path / "state")}
        env.update(environ)
        return config.load(str(path), environ=env)

    return make


@pytest.fixture
def settings(make_settings: typing.Callable[..., config.Settings]) -> config.Settings:
    return make_settings()


@pytest.fixture
async def http(aiohttp_client: typing.Any, settings: config.Settings) -> typing.Any:
    """A test client of a local-mode app on the memory driver."""
    driver = MemoryDriver(cleanup_interval=0)
    app = create_app(settings, driver=driver)
    return await aiohttp_client(app)
