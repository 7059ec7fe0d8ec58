"""Client ID metadata documents: fetch, SSRF guard, cache, and a full flow.

A document server on loopback serves good and bad documents and counts
fetches. The app allows http on loopback (cimd.allow_http_loopback), as only
tests should.
"""

from __future__ import annotations

import asyncio
import collections

import pytest
from aiohttp import web

from frontauth.app import create_app
from frontauth.drivers.memory import MemoryDriver
from tests.oauth_checks import error_page
from tests.oauth_flow import REDIRECT_URI, Client, authorize_params, exchange, get_code, new_pkce, refresh

TEST_TOML = "[ratelimit]\nenabled = false\n[cimd]\nallow_http_loopback = true\ntimeout = 0.5\nmax_bytes = 2048\n"


def document_for(url: str, **changes: object) -> dict[str, object]:
    document: dict[str, object] = {
        "client_id": url,
        "client_name": "Document client",
        "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "none",
    }
    document.update(changes)
    return document


@pytest.fixture
async def documents(aiohttp_server):
    """A loopback server of metadata documents; ``server.hits`` counts requests per path."""
    hits: collections.Counter[str] = collections.Counter()

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        hits[name] += 1
        url = str(request.url)
        if name == "good":
            return web.json_response(document_for(url), headers={"Cache-Control": "max-age=300"})
        if name == "other-id":
            return web.json_response(document_for(url.replace("other-id", "good")))
        if name == "big":
            return web.json_response(document_for(url, client_name="x" * 4000))
        if name == "slow":
            await asyncio.sleep(2)
            return web.json_response(document_for(url))
        if name == "away":
            raise web.HTTPFound(f"http://localhost:{request.url.port}/docs/good")
        if name == "same-host":
            raise web.HTTPFound("/docs/good")
        if name == "web-redirect":
            return web.json_response(document_for(url, redirect_uris=["http://evil.example/cb"]))
        if name == "secret":
            return web.json_response(document_for(url, token_endpoint_auth_method="client_secret_basic"))
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_get("/docs/{name}", serve)
    server = await aiohttp_server(app, host="127.0.0.1")
    server.hits = hits
    return server


@pytest.fixture
async def http(aiohttp_client, make_settings):
    return await aiohttp_client(create_app(make_settings(TEST_TOML), driver=MemoryDriver(cleanup_interval=0)))


def doc_url(server, name: str) -> str:
    return f"http://127.0.0.1:{server.port}/docs/{name}"


async def rejected_page(http, client_id: str) -> dict[str, str]:
    _, challenge = new_pkce()
    response = await http.get(
        "/oauth/authorize", params=authorize_params(Client(client_id), challenge), allow_redirects=False
    )
    assert response.status == 400, await response.text()
    assert "Location" not in response.headers
    return error_page(await response.text())


async def test_metadata_advertises_documents(http):
    document = await (await http.get("/.well-known/oauth-authorization-server")).json()
    assert document["client_id_metadata_document_supported"] is True


async def test_document_client_completes_flow(http, documents):
    client = Client(doc_url(documents, "good"))
    code, verifier, _ = await get_code(http, client)
    response = await exchange(http, client, code, verifier)
    assert response.status == 200, await response.text()
    tokens = await response.json()
    refreshed = await refresh(http, client, tokens["refresh_token"])
    assert refreshed.status == 200, await refreshed.text()
    # Authorize, consent and two token requests all used the one cached fetch.
    assert documents.hits["good"] == 1


async def test_same_host_redirect_followed(http, documents):
    url = doc_url(documents, "same-host")
    page = await rejected_page(http, url)
    # The document at the redirect target names its own URL, not the client_id.
    assert page["description"] == "the client_id inside the client metadata document does not equal its URL"
    assert documents.hits["good"] == 1


@pytest.mark.parametrize(
    ("name", "description"),
    [
        pytest.param("other-id", "the client_id inside the client metadata document does not equal its URL", id="other-client-id"),
        pytest.param("big", "the client metadata document is larger than 2048 bytes", id="too-large"),
        pytest.param("slow", "fetching the client metadata document timed out after 0.5 s", id="too-slow"),
        pytest.param("away", "the client metadata document redirects to another host", id="redirect-to-other-host"),
        pytest.param("missing", "fetching the client metadata document returned HTTP 404", id="not-found"),
        pytest.param("web-redirect", "redirect URIs must use https, or http on a loopback address", id="bad-redirect-uri"),
        pytest.param("secret", "a client metadata document client must use token_endpoint_auth_method none", id="secret"),
    ],
)
async def test_bad_document_rejected_once(http, documents, name, description):
    url = doc_url(documents, name)
    first = await rejected_page(http, url)
    second = await rejected_page(http, url)
    assert first["error"] == "invalid_client"
    assert first["title"] == "Client metadata document rejected"
    assert first["description"] == description
    assert second == first
    assert documents.hits[name] == 1


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://10.1.2.3/client.json", id="private"),
        pytest.param("https://169.254.169.254/latest/meta-data", id="cloud-metadata"),
        pytest.param("https://[fd00::1]/client.json", id="private-ipv6"),
        pytest.param("https://[::ffff:192.168.0.1]/client.json", id="mapped-ipv4"),
        pytest.param("https://0.0.0.0/client.json", id="unspecified"),
    ],
)
async def test_internal_address_rejected(http, url):
    page = await rejected_page(http, url)
    assert page["error"] == "invalid_client"
    assert page["description"] == "the client_id URL resolves to a private or internal address"


async def test_http_to_other_host_rejected(http):
    page = await rejected_page(http, "http://clients.example/client.json")
    assert page["description"] == "an http client_id URL must name a loopback host"


async def test_name_resolving_to_loopback_rejected(aiohttp_client, make_settings):
    app = create_app(make_settings("[cimd]\ntimeout = 0.5\n"), driver=MemoryDriver(cleanup_interval=0))
    http = await aiohttp_client(app)
    page = await rejected_page(http, "https://localhost/client.json")
    assert page["description"] == "the client_id URL resolves to a private or internal address"


async def test_http_refused_without_test_setting(aiohttp_client, make_settings, documents):
    http = await aiohttp_client(create_app(make_settings(), driver=MemoryDriver(cleanup_interval=0)))
    client_id = doc_url(documents, "good")
    # Without cimd.allow_http_loopback an http client_id is an ordinary, unknown client.
    _, challenge = new_pkce()
    response = await http.get("/oauth/authorize", params=authorize_params(Client(client_id), challenge))
    assert response.status == 400
    assert error_page(await response.text())["title"] == "Unknown application"
    assert documents.hits["good"] == 0


async def test_denied_domain_rejected(aiohttp_client, make_settings, documents):
    toml = TEST_TOML + 'denied_domains = ["127.0.0.1"]\n'
    http = await aiohttp_client(create_app(make_settings(toml), driver=MemoryDriver(cleanup_interval=0)))
    page = await rejected_page(http, doc_url(documents, "good"))
    assert page["description"] == "documents from 127.0.0.1 are not accepted by this server"
    assert documents.hits["good"] == 0


async def test_domain_outside_allow_list_rejected(aiohttp_client, make_settings, documents):
    toml = TEST_TOML + 'allowed_domains = ["clients.example"]\n'
    http = await aiohttp_client(create_app(make_settings(toml), driver=MemoryDriver(cleanup_interval=0)))
    page = await rejected_page(http, doc_url(documents, "good"))
    assert page["description"] == "documents from 127.0.0.1 are not accepted by this server"
