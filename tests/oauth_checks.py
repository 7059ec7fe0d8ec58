"""Helpers for the endpoint tests: shared settings, custom apps, error pages, redirects and introspection.

Test modules import the fixtures ``settings``, ``unlimited_settings`` and
``unlimited`` from here. Settings are loaded once per module, because loading
them costs far more than the rest of a test's set-up. Every test still gets its
own app and an empty memory driver.
"""

from __future__ import annotations

import base64
import html.parser
import typing
import urllib.parse

import pytest
from aiohttp.test_utils import TestClient

from frontauth import config
from frontauth.app import create_app
from frontauth.config import Settings
from frontauth.drivers.memory import MemoryDriver
from tests.oauth_flow import Client, local_path, parse_form

ISSUER = "http://127.0.0.1:8080"
FORM = "application/x-www-form-urlencoded"
# The odd-input checks send hundreds of requests from one address; they must reach the handlers.
NO_RATE_LIMIT = "[ratelimit]\nenabled = false\n"


def load_settings(directory: typing.Any, toml: str = "") -> Settings:
    """Load settings from TOML text, keeping generated state in ``directory``."""
    path = directory / "frontauth.toml"
    path.write_text(toml)
    return config.load(str(path), environ={"FRONTAUTH_SERVER_STATE_DIR": str(directory / "state")})


@pytest.fixture(scope="module")
def settings(tmp_path_factory: typing.Any) -> Settings:
    """Default settings, loaded once for the module (overrides the per-test fixture of conftest)."""
    return load_settings(tmp_path_factory.mktemp("settings"))


@pytest.fixture(scope="module")
def unlimited_settings(tmp_path_factory: typing.Any) -> Settings:
    return load_settings(tmp_path_factory.mktemp("settings"), NO_RATE_LIMIT)


@pytest.fixture
async def unlimited(aiohttp_client: typing.Any, unlimited_settings: Settings) -> TestClient:
    """A test client of an app without rate limits."""
    return await start_app(aiohttp_client, unlimited_settings)


def basic(client_id: str, secret: str) -> str:
    """Return an Authorization header with form-urlencoded credentials (RFC 6749 §2.3.1)."""
    raw = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(secret)}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


async def start_app(aiohttp_client: typing.Any, settings: Settings) -> TestClient:
    """Start a local-mode app with these settings on a fresh memory driver."""
    return await aiohttp_client(create_app(settings, driver=MemoryDriver(cleanup_interval=0)))


class ErrorPageParser(html.parser.HTMLParser):
    """Collects the title, the lead paragraph and the error code of error.html."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {"title": "", "description": "", "error": ""}
        self._current: str | None = None
        self._in_code_paragraph = False

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs_list).get("class") or "").split()
        if tag == "h1":
            self._current = "title"
        elif tag == "p" and "lead" in classes:
            self._current = "description"
        elif tag == "p" and "code" in classes:
            self._in_code_paragraph = True
        elif tag == "code" and self._in_code_paragraph:
            self._current = "error"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "p", "code"):
            self._current = None
        if tag == "p":
            self._in_code_paragraph = False

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self.fields[self._current] += data


def error_page(text: str) -> dict[str, str]:
    """Return the title, description and error code shown on an error page."""
    parser = ErrorPageParser()
    parser.feed(text)
    return parser.fields


def split_redirect(location: str) -> tuple[str, dict[str, str]]:
    """Return the Location without its query, and the query parameters."""
    parts = urllib.parse.urlsplit(location)
    base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return base, dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))


async def introspect(http: TestClient, client: Client, token: str) -> dict[str, typing.Any]:
    """Introspect a token as this client and return the JSON body."""
    form = {"token": token, "client_id": client.client_id}
    if client.client_secret is not None:
        form["client_secret"] = client.client_secret
    response = await http.post("/oauth/introspect", data=form)
    assert response.status == 200, await response.text()
    return await response.json()


async def start_authorization(http: TestClient, params: dict[str, str]) -> str:
    """Send an authorization request that must lead to a page; return that page's Location."""
    response = await http.get("/oauth/authorize", params=params, allow_redirects=False)
    assert response.status == 302, await response.text()
    return response.headers["Location"]


def cookie_header(http: TestClient) -> bytes:
    """Return the test client's cookies as a Cookie header value for a raw request."""
    return "; ".join(f"{cookie.key}={cookie.value}" for cookie in http.session.cookie_jar).encode()


async def page_form(http: TestClient, location: str) -> dict[str, str]:
    """GET a sign-in or consent page and return the fields of its form."""
    page = await http.get(local_path(location), allow_redirects=False)
    assert page.status == 200, await page.text()
    return dict(parse_form(await page.text())["fields"])
