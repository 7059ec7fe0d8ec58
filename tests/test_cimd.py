"""Client ID metadata documents: fetch, SSRF guard, cache, and a full flow.

A document server on loopback serves good and bad documents and counts
fetches. The app allows http on loopback (cimd.allow_http_loopback), as only
tests should.
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket

import pytest
from aiohttp import web

from frontauth import cimd, config
from frontauth.app import create_app
from frontauth.appkeys import SERVICES
from frontauth.drivers.memory import MemoryDriver
from tests.oauth_checks import error_page
from frontauth.tokens import digest
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
        if name == "right-to-left":
            return web.json_response(document_for(url, client_name="Good App\u202egnp.exe"))
        if name == "nul-contact":
            return web.json_response(document_for(url, contacts=["admin\u0000@app.example"]))
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
        pytest.param("right-to-left", "client_name contains U+202E, a control, format or unassigned character",
                     id="name-right-to-left-override"),
        pytest.param("nul-contact", "contacts contains U+0000, a control, format or unassigned character", id="nul-contact"),
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


async def test_cached_document_checked_again(http):
    # A document cached before a rule existed is held to the rule when it is read back.
    url = "http://127.0.0.1:9/docs/cached"
    services = http.app[SERVICES]
    entry = {"document": document_for(url, client_name="x\u0000y")}
    await services.driver.set(services.stores.key("cimd", digest(url)), json.dumps(entry).encode(), 300)
    page = await rejected_page(http, url)
    assert page["title"] == "Client metadata document rejected"
    assert page["description"] == "client_name contains U+0000, a control, format or unassigned character"


# --- host normalisation ----------------------------------------------------------------
# yarl, and so aiohttp, encodes the host with IDNA 2008 and the UTS 46 mapping
# before it resolves it, and a trailing dot names the same DNS name.

DENY_EVIL = TEST_TOML + 'denied_domains = ["evil.example", "fa\u00df.de"]\n'
NOT_ACCEPTED = "documents from {} are not accepted by this server"


class RecordingResolver:
    """Stands in for aiohttp's DefaultResolver: records each host and answers 127.0.0.1, with no DNS query."""

    hosts: list[str] = []

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[dict]:
        self.hosts.append(host)
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass


@pytest.fixture
def resolved_hosts(monkeypatch) -> list[str]:
    """Replace name resolution for document fetches; return the list of hosts resolved."""
    hosts: list[str] = []
    monkeypatch.setattr(RecordingResolver, "hosts", hosts)
    monkeypatch.setattr(cimd, "DefaultResolver", RecordingResolver)
    return hosts


@pytest.mark.parametrize(
    ("url", "host"),
    [
        pytest.param("https://\uff45vil.example/c", "evil.example", id="fullwidth-letter"),
        pytest.param("https://evil.example./c", "evil.example", id="trailing-dot"),
        pytest.param("https://EVIL.Example/c", "evil.example", id="upper-case"),
        pytest.param("https://evil\u3002example/c", "evil.example", id="ideographic-full-stop"),
        pytest.param("https://api.\uff45vil.example./c", "api.evil.example", id="subdomain"),
        pytest.param("https://xn--fa-hia.de/c", "xn--fa-hia.de", id="punycode-of-unicode-entry"),
        pytest.param("https://fa\u00df.de/c", "xn--fa-hia.de", id="unicode-of-unicode-entry"),
    ],
)
def test_denied_domain_matches_normalised_host(make_settings, url, host):
    with pytest.raises(cimd.DocumentRejected) as raised:
        cimd.check_url(url, make_settings(DENY_EVIL))
    assert raised.value.description == NOT_ACCEPTED.format(host)


@pytest.mark.parametrize(
    ("url", "raw_host"),
    [
        pytest.param("https://\uff43lients.example/c", "clients.example", id="fullwidth-letter"),
        pytest.param("https://Clients.Example./c", "clients.example.", id="trailing-dot"),
        pytest.param("https://api.clients.example/c", "api.clients.example", id="subdomain"),
    ],
)
def test_allowed_domain_matches_normalised_host(make_settings, url, raw_host):
    settings = make_settings('[cimd]\nallowed_domains = ["clients.example"]\n')
    assert cimd.check_url(url, settings).raw_host == raw_host


def test_allowed_domain_excludes_lookalike(make_settings):
    settings = make_settings('[cimd]\nallowed_domains = ["clients.example"]\n')
    with pytest.raises(cimd.DocumentRejected) as raised:
        cimd.check_url("https://clients.example.evil.example/c", settings)
    assert raised.value.description == NOT_ACCEPTED.format("clients.example.evil.example")


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://evil.exam\tple/c", id="tab-in-host"),
        pytest.param("https://evil.example/c\u0000", id="nul-in-path"),
        pytest.param("https://app.example/\u202eclient.json", id="right-to-left-override"),
        pytest.param("https://app.example/my client.json", id="space"),
    ],
)
def test_url_with_hidden_character_rejected(make_settings, url):
    with pytest.raises(cimd.DocumentRejected) as raised:
        cimd.check_url(url, make_settings(DENY_EVIL))
    assert raised.value.description == "the client_id URL contains a space or a control, format or unassigned character"


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://%65vil.example/c", id="percent-encoded"),
        pytest.param("https://evil_example!/c", id="punctuation"),
    ],
)
def test_host_outside_dns_syntax_rejected(make_settings, url):
    with pytest.raises(cimd.DocumentRejected) as raised:
        cimd.check_url(url, make_settings())
    assert raised.value.description == "the client_id URL host is not a valid host name"


@pytest.mark.parametrize(
    ("url", "host"),
    [
        pytest.param("https://\uff45vil.example:{port}/docs/good", "evil.example", id="fullwidth-letter"),
        pytest.param("https://evil.example.:{port}/docs/good", "evil.example", id="trailing-dot"),
    ],
)
async def test_denied_normalised_host_never_resolved(aiohttp_client, make_settings, documents, resolved_hosts, url, host):
    http = await aiohttp_client(create_app(make_settings(DENY_EVIL), driver=MemoryDriver(cleanup_interval=0)))
    page = await rejected_page(http, url.format(port=documents.port))
    assert page["description"] == NOT_ACCEPTED.format(host)
    assert resolved_hosts == []
    assert documents.hits["good"] == 0


@pytest.mark.parametrize("host", ["evil.example", "evil.example.", "api.evil.example", "EVIL.example"])
async def test_resolver_applies_domain_lists(make_settings, resolved_hosts, host):
    resolver = cimd.CheckedResolver(make_settings(DENY_EVIL))
    with pytest.raises(cimd.DocumentRejected) as raised:
        await resolver.resolve(host, 443)
    assert raised.value.description == NOT_ACCEPTED.format(host.lower().rstrip("."))
    assert resolved_hosts == []


async def test_resolver_resolves_allowed_host(make_settings, resolved_hosts):
    resolver = cimd.CheckedResolver(make_settings(DENY_EVIL))
    results = await resolver.resolve("clients.example", 443)
    assert [result["host"] for result in results] == ["127.0.0.1"]
    assert resolved_hosts == ["clients.example"]


async def test_fullwidth_loopback_address_rejected(aiohttp_client, make_settings, documents, resolved_hosts):
    # yarl maps fullwidth digits to 127.0.0.1, an IP address that aiohttp connects to without the resolver.
    http = await aiohttp_client(create_app(make_settings("[cimd]\ntimeout = 0.5\n"), driver=MemoryDriver(cleanup_interval=0)))
    url = f"https://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{documents.port}/docs/good"
    page = await rejected_page(http, url)
    assert page["description"] == "the client_id URL resolves to a private or internal address"
    assert resolved_hosts == []


@pytest.mark.parametrize(
    "address",
    [
        "100.100.100.200",  # shared address space (RFC 6598), a cloud metadata service
        "::ffff:100.100.100.200",
        "2002:a9fe:a9fe::",  # 6to4 wrapping 169.254.169.254
        "169.254.169.254",
        "10.0.0.1",
        "192.0.2.1",
        "64:ff9b::a9fe:a9fe",
        "::1",
        "224.0.0.1",
    ],
)
def test_check_address_refuses_internal(address: str) -> None:
    with pytest.raises(cimd.DocumentRejected):
        cimd.check_address(address, config.Settings())


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860:4860::8888", "2002:808:808::1"])
def test_check_address_allows_global(address: str) -> None:
    cimd.check_address(address, config.Settings())
