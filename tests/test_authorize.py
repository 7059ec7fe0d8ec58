"""The authorization endpoint: request validation, redirected errors and error pages."""

from __future__ import annotations

import urllib.parse

import pytest

from tests.oauth_checks import (  # noqa: F401 (settings, unlimited_settings and unlimited are fixtures)
    ISSUER,
    cookie_header,
    error_page,
    settings,
    split_redirect,
    start_app,
    unlimited,
    unlimited_settings,
)
from tests.oauth_flow import REDIRECT_URI, Client, authorize_params, exchange, get_code, new_pkce, register
from tests.odd_requests import QUERY_KINDS, query_requests, server_errors

OTHER_PORT_URI = "http://127.0.0.1:50123/callback"


async def send_authorize(http, params):
    """GET /oauth/authorize with a dict or a list of pairs, without following redirects."""
    return await http.get("/oauth/authorize", params=params, allow_redirects=False)


def without(params: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in params.items() if k not in names}


# (parameters to change, parameters to drop, error, error_description)
REDIRECTED_ERRORS = [
    pytest.param({}, ("code_challenge",), "invalid_request", "code_challenge is required (PKCE, RFC 7636)",
                 id="missing-challenge"),
    pytest.param({"code_challenge_method": "plain"}, (), "invalid_request",
                 "code_challenge_method is not supported; only S256 is accepted", id="plain-method"),
    pytest.param({"code_challenge_method": "s256"}, (), "invalid_request",
                 "code_challenge_method is not supported; only S256 is accepted", id="lowercase-method"),
    pytest.param({}, ("code_challenge_method",), "invalid_request",
                 "code_challenge_method is missing; only S256 is accepted", id="missing-method"),
    pytest.param({"code_challenge_method": ""}, (), "invalid_request",
                 "code_challenge_method is missing; only S256 is accepted", id="empty-method"),
    pytest.param({"code_challenge": "too-short"}, (), "invalid_request",
                 "code_challenge must be 43 base64url characters (S256)", id="short-challenge"),
    pytest.param({"code_challenge": "+" * 43}, (), "invalid_request",
                 "code_challenge must be 43 base64url characters (S256)", id="challenge-not-base64url"),
    pytest.param({"code_challenge": "A" * 44}, (), "invalid_request",
                 "code_challenge must be 43 base64url characters (S256)", id="challenge-too-long"),
    pytest.param({"response_type": "token"}, (), "unsupported_response_type", "response_type must be code",
                 id="response-type-token"),
    pytest.param({"response_type": "code id_token"}, (), "unsupported_response_type", "response_type must be code",
                 id="response-type-hybrid"),
    pytest.param({}, ("response_type",), "invalid_request", "response_type is required",
                 id="missing-response-type"),
    pytest.param({"scope": "mcp admin"}, (), "invalid_scope",
                 "the request names a scope this server does not offer", id="unknown-scope"),
    pytest.param({"resource": "https://other.example/mcp"}, (), "invalid_target",
                 "this server does not issue tokens for the requested resource", id="resource-not-configured"),
    pytest.param({"resource": "/mcp"}, (), "invalid_target",
                 "resource must be an absolute URI without a fragment", id="resource-relative"),
    pytest.param({"resource": ISSUER + "/mcp#part"}, (), "invalid_target",
                 "resource must be an absolute URI without a fragment", id="resource-with-fragment"),
    pytest.param({"resource": "http://[::1/mcp"}, (), "invalid_target",
                 "resource must be an absolute URI without a fragment", id="resource-bad-ipv6"),
    pytest.param({"state": "s" * 1025}, (), "invalid_request", "state is too long", id="state-too-long"),
]


@pytest.mark.parametrize(("changes", "dropped", "error", "description"), REDIRECTED_ERRORS)
async def test_invalid_request_redirected_with_state(http, changes, dropped, error, description):
    client = await register(http)
    _, challenge = new_pkce()
    params = without(authorize_params(client, challenge, **changes), *dropped)
    response = await send_authorize(http, params)
    assert response.status == 302
    base, query = split_redirect(response.headers["Location"])
    assert base == REDIRECT_URI
    assert query["error"] == error
    assert query["error_description"] == description
    assert query["state"] == params["state"]
    assert query["iss"] == ISSUER
    assert "code" not in query


async def test_missing_state_redirected_without_state(http):
    client = await register(http)
    _, challenge = new_pkce()
    response = await send_authorize(http, without(authorize_params(client, challenge), "state"))
    assert response.status == 302
    base, query = split_redirect(response.headers["Location"])
    assert base == REDIRECT_URI
    assert query == {"error": "invalid_request", "error_description": "state is required", "iss": ISSUER}


async def test_empty_state_rejected(http):
    client = await register(http)
    _, challenge = new_pkce()
    response = await send_authorize(http, authorize_params(client, challenge, state=""))
    assert response.status == 302
    _, query = split_redirect(response.headers["Location"])
    assert query["error"] == "invalid_request"
    assert query["error_description"] == "state is required"


async def test_state_echoed_exactly(http):
    client = await register(http)
    state = "a b&c=d/é?%25+"
    _, _, query = await get_code(http, client, state=state)
    assert query["state"] == state


async def test_error_redirect_keeps_registered_query(http):
    registered = REDIRECT_URI + "?tenant=a"
    client = await register(http, redirect_uris=[registered])
    _, challenge = new_pkce()
    response = await send_authorize(http, authorize_params(client, challenge, response_type="token"))
    base, query = split_redirect(response.headers["Location"])
    assert base == REDIRECT_URI
    assert query["tenant"] == "a"
    assert query["error"] == "unsupported_response_type"


@pytest.mark.parametrize("name", ["scope", "code_challenge", "code_challenge_method", "response_type"])
async def test_duplicated_parameter_redirected(http, name):
    client = await register(http)
    _, challenge = new_pkce()
    params = authorize_params(client, challenge)
    pairs = list(params.items()) + [(name, params[name])]
    response = await send_authorize(http, pairs)
    assert response.status == 302
    base, query = split_redirect(response.headers["Location"])
    assert base == REDIRECT_URI
    assert query["error"] == "invalid_request"
    assert query["error_description"] == f"parameter {name} is included more than once"
    assert query["state"] == params["state"]
    assert query["iss"] == ISSUER


async def test_duplicated_state_redirected_without_state(http):
    client = await register(http)
    _, challenge = new_pkce()
    params = authorize_params(client, challenge)
    response = await send_authorize(http, list(params.items()) + [("state", "other")])
    assert response.status == 302
    _, query = split_redirect(response.headers["Location"])
    assert query == {
        "error": "invalid_request",
        "error_description": "parameter state is included more than once",
        "iss": ISSUER,
    }


async def test_two_resources_rejected(http):
    client = await register(http)
    _, challenge = new_pkce()
    params = authorize_params(client, challenge)
    pairs = list(params.items()) + [("resource", ISSUER + "/mcp"), ("resource", ISSUER + "/mcp")]
    response = await send_authorize(http, pairs)
    _, query = split_redirect(response.headers["Location"])
    assert query["error"] == "invalid_target"
    assert query["error_description"] == "only one resource per request is supported"


async def test_configured_resource_accepted(http):
    client = await register(http)
    code, verifier, _ = await get_code(http, client, resource=ISSUER + "/mcp")
    response = await exchange(http, client, code, verifier)
    assert response.status == 200, await response.text()


# Requests whose client or redirect_uri cannot be trusted: an error page, never a redirect.
@pytest.mark.parametrize(
    "redirect_uri",
    [
        pytest.param("http://127.0.0.1:33418/other", id="other-path"),
        pytest.param("http://127.0.0.1:33418/callback/", id="trailing-slash"),
        pytest.param("http://127.0.0.1:33418/Callback", id="path-case"),
        pytest.param("http://attacker.example/callback", id="other-host"),
        pytest.param("http://attacker.example:33418/callback", id="other-host-same-port"),
        pytest.param("http://127.0.0.1:33418@attacker.example/callback", id="userinfo-trick"),
        pytest.param("http://127.0.0.1:33418/callback?next=x", id="extra-query"),
        pytest.param("http://127.0.0.1:33418/callback#fragment", id="fragment"),
        pytest.param("https://127.0.0.1:33418/callback", id="https-instead-of-http"),
        pytest.param("http://localhost:33418/callback", id="localhost-instead-of-ip"),
        pytest.param("http://[::1]:33418/callback", id="ipv6-instead-of-ipv4"),
        pytest.param("http://127.0.0.2:33418/callback", id="other-loopback-address"),
        pytest.param("http://127.0.0.1:50123/other", id="other-port-and-path"),
        pytest.param("http://127.0.0.1:99999/callback", id="port-out-of-range"),
        pytest.param("javascript:alert(1)", id="javascript"),
        pytest.param("", id="empty"),
    ],
)
async def test_mismatched_redirect_uri_shows_error_page(http, redirect_uri):
    client = await register(http)
    _, challenge = new_pkce()
    # The response_type is wrong too: had the redirect_uri been trusted, that error would be redirected.
    params = authorize_params(client, challenge, redirect_uri=redirect_uri, response_type="token")
    response = await send_authorize(http, params)
    assert response.status == 400
    assert "Location" not in response.headers
    assert response.content_type == "text/html"
    page = error_page(await response.text())
    assert page["title"] == "Invalid redirect address"
    assert page["description"] == "The redirect_uri does not match any address registered for this application."
    assert page["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("client_id", "description"),
    [
        pytest.param("no-such-client", "No application is registered under this client_id.", id="unknown"),
        pytest.param("x" * 300, "No application is registered under this client_id.", id="too-long"),
        pytest.param("", "The request does not name a client (client_id is missing).", id="empty"),
        pytest.param(None, "The request does not name a client (client_id is missing).", id="missing"),
    ],
)
async def test_unknown_client_shows_error_page(http, client_id, description):
    _, challenge = new_pkce()
    params = authorize_params(Client("placeholder"), challenge, code_challenge_method="plain")
    if client_id is None:
        del params["client_id"]
    else:
        params["client_id"] = client_id
    response = await send_authorize(http, params)
    assert response.status == 400
    assert "Location" not in response.headers
    page = error_page(await response.text())
    assert page["title"] == "Unknown application"
    assert page["description"] == description
    assert page["error"] == "invalid_request"


@pytest.mark.parametrize("name", ["client_id", "redirect_uri"])
async def test_duplicated_client_parameter_shows_error_page(http, name):
    client = await register(http)
    _, challenge = new_pkce()
    params = authorize_params(client, challenge)
    response = await send_authorize(http, list(params.items()) + [(name, params[name])])
    assert response.status == 400
    assert "Location" not in response.headers
    page = error_page(await response.text())
    assert page["description"] == f"parameter {name} is included more than once"
    assert page["error"] == "invalid_request"


async def test_redirect_uri_required_with_two_registered(http):
    client = await register(http, redirect_uris=[REDIRECT_URI, "https://app.example/callback"])
    _, challenge = new_pkce()
    response = await send_authorize(http, without(authorize_params(client, challenge), "redirect_uri"))
    assert response.status == 400
    assert "Location" not in response.headers
    assert error_page(await response.text())["title"] == "Invalid redirect address"


async def test_redirect_uri_optional_with_one_registered(http):
    client = await register(http)
    _, challenge = new_pkce()
    response = await send_authorize(http, without(authorize_params(client, challenge), "redirect_uri"))
    assert response.status == 302
    assert urllib.parse.urlsplit(response.headers["Location"]).path == "/oauth/login"


@pytest.mark.parametrize("query", [b"client_id=%ff", b"client_id=a%00b", b"state=" + b"s" * 5000])
async def test_unparsable_query_shows_error_page(http, query):
    response = await http.get("/oauth/authorize?" + query.decode(), allow_redirects=False)
    assert response.status == 400
    assert "Location" not in response.headers
    assert error_page(await response.text())["error"] == "invalid_request"


@pytest.mark.parametrize(
    "redirect_uri",
    [
        pytest.param(OTHER_PORT_URI, id="other-port"),
        pytest.param("http://127.0.0.1/callback", id="no-port"),
    ],
)
async def test_loopback_redirect_uri_other_port_accepted(http, redirect_uri):
    registered = await register(http)
    client = Client(registered.client_id, redirect_uri=redirect_uri)
    code, verifier, query = await get_code(http, client)
    assert query["iss"] == ISSUER
    response = await exchange(http, client, code, verifier)
    assert response.status == 200, await response.text()


async def test_code_bound_to_requested_port(http):
    registered = await register(http)
    client = Client(registered.client_id, redirect_uri=OTHER_PORT_URI)
    code, verifier, _ = await get_code(http, client)
    response = await exchange(http, registered, code, verifier)
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "invalid_grant"
    assert body["error_description"] == "redirect_uri does not match the authorization request"


async def test_https_redirect_uri_not_port_flexible(http):
    client = await register(http, redirect_uris=["https://app.example:8443/callback"])
    _, challenge = new_pkce()
    response = await send_authorize(http, authorize_params(client, challenge, redirect_uri="https://app.example:9443/callback"))
    assert response.status == 400
    assert "Location" not in response.headers


async def test_pre_registered_client_scope_limit(aiohttp_client, make_settings):
    settings = make_settings(
        '[scopes]\nmcp = "Use the tools"\nadmin = "Administer"\n'
        f'[[clients]]\nclient_id = "limited"\nredirect_uris = ["{REDIRECT_URI}"]\nscope = "mcp"\n'
    )
    http = await start_app(aiohttp_client, settings)
    _, challenge = new_pkce()
    params = authorize_params(Client("limited"), challenge, scope="mcp admin")
    response = await send_authorize(http, params)
    _, query = split_redirect(response.headers["Location"])
    assert query["error"] == "invalid_scope"
    assert query["error_description"] == "the client may not request this scope"


@pytest.mark.parametrize("kind", QUERY_KINDS)
async def test_odd_input_no_server_error(unlimited, kind):
    client = await register(unlimited)
    # Signed in with consent remembered, a request that passes every check issues a code.
    await get_code(unlimited, client)
    _, challenge = new_pkce()
    params = authorize_params(client, challenge, resource=ISSUER + "/mcp", prompt="consent")
    session = ((b"Cookie", cookie_header(unlimited)),)
    requests = query_requests(b"/oauth/authorize", params, client.client_id, session)[kind]
    assert await server_errors(unlimited, requests) == []
