"""Dynamic client registration (RFC 7591): metadata checks, access control and the cap."""

from __future__ import annotations

import json

import pytest

from tests.oauth_checks import NO_RATE_LIMIT, basic, settings, start_app  # noqa: F401 (settings is a fixture)
from tests.oauth_flow import REDIRECT_URI, Client, exchange, get_code
from tests.odd_requests import (
    CONTENT_TYPES,
    ODD_BODIES,
    POST_ONLY_METHODS,
    OddRequest,
    authorization_headers,
    server_errors,
)

LOOPBACK_ONLY = "redirect URIs must use https, or http on a loopback address"
NO_FRAGMENT = "redirect URIs must be absolute and carry no fragment"
WEB_RULE = "a web client's redirect URIs must use https on a host other than a loopback address"
NATIVE_RULE = (
    "a native client's redirect URIs must use http on a loopback address, https, "
    "or a private-use scheme with a period in its name"
)


async def post_metadata(http, metadata, headers=None):
    return await http.post("/oauth/register", json=metadata, headers=headers or {})


async def error_of(response) -> tuple[int, str, str]:
    body = await response.json()
    return response.status, body["error"], body["error_description"]


def public(**metadata: object) -> dict[str, object]:
    body: dict[str, object] = {"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}
    body.update(metadata)
    return body


async def test_public_client_registered(http):
    response = await post_metadata(http, public(client_name="Editor", scope="mcp"))
    assert response.status == 201
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert len(body["client_id"]) == 32
    assert isinstance(body["client_id_issued_at"], int)
    assert body["redirect_uris"] == [REDIRECT_URI]
    assert body["token_endpoint_auth_method"] == "none"
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    assert body["response_types"] == ["code"]
    assert body["client_name"] == "Editor"
    assert body["scope"] == "mcp"
    assert "client_secret" not in body


async def test_confidential_client_gets_secret(http):
    response = await post_metadata(http, {"redirect_uris": [REDIRECT_URI]})
    assert response.status == 201
    body = await response.json()
    # RFC 7591 §2: client_secret_basic is the default method.
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    assert len(body["client_secret"]) >= 43
    assert body["client_secret_expires_at"] == 0


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_registered_secret_works_at_token_endpoint(http, method):
    body = await (await post_metadata(http, {"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": method})).json()
    client = Client(body["client_id"], body["client_secret"])
    code, verifier, _ = await get_code(http, client)
    if method == "client_secret_basic":
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier}
        response = await http.post("/oauth/token", data=form, headers={"Authorization": basic(client.client_id, client.client_secret)})
    else:
        response = await exchange(http, client, code, verifier, client_secret=client.client_secret)
    assert response.status == 200, await response.text()


# Marks a field to leave out of the metadata.
DROP = object()

# (changes to valid metadata, error, error_description)
INVALID_METADATA = [
    pytest.param({"redirect_uris": DROP}, "invalid_redirect_uri", "redirect_uris is required", id="missing-redirect-uris"),
    pytest.param({"redirect_uris": []}, "invalid_redirect_uri", "redirect_uris is required", id="empty-redirect-uris"),
    pytest.param({"redirect_uris": None}, "invalid_redirect_uri", "redirect_uris is required", id="null-redirect-uris"),
    pytest.param({"redirect_uris": REDIRECT_URI}, "invalid_client_metadata", "redirect_uris must be an array of strings",
                 id="redirect-uris-string"),
    pytest.param({"redirect_uris": [5]}, "invalid_client_metadata", "redirect_uris must be an array of strings",
                 id="redirect-uri-number"),
    pytest.param({"redirect_uris": ["https://app.example/cb#x"]}, "invalid_redirect_uri", NO_FRAGMENT, id="fragment"),
    pytest.param({"redirect_uris": ["https://app.example/cb#"]}, "invalid_redirect_uri", NO_FRAGMENT, id="empty-fragment"),
    pytest.param({"redirect_uris": ["/callback"]}, "invalid_redirect_uri", NO_FRAGMENT, id="relative"),
    pytest.param({"redirect_uris": ["http://app.example/cb"]}, "invalid_redirect_uri", LOOPBACK_ONLY, id="plain-http"),
    pytest.param({"redirect_uris": ["http://127.0.0.1.attacker.example/cb"]}, "invalid_redirect_uri", LOOPBACK_ONLY,
                 id="loopback-lookalike"),
    pytest.param({"redirect_uris": ["javascript:alert(1)"]}, "invalid_redirect_uri", LOOPBACK_ONLY, id="javascript"),
    pytest.param({"redirect_uris": ["data:text/html,x"]}, "invalid_redirect_uri", LOOPBACK_ONLY, id="data"),
    pytest.param({"redirect_uris": ["file:///etc/passwd"]}, "invalid_redirect_uri", LOOPBACK_ONLY, id="file"),
    pytest.param({"redirect_uris": ["https:///cb"]}, "invalid_redirect_uri", LOOPBACK_ONLY, id="https-without-host"),
    pytest.param({"redirect_uris": ["http://[::1/cb"]}, "invalid_redirect_uri", "a redirect URI is not a valid URI",
                 id="unclosed-ipv6-bracket"),
    pytest.param({"redirect_uris": ["http://127.0.0.1:99999/cb"]}, "invalid_redirect_uri",
                 "a redirect URI is not a valid URI", id="port-out-of-range"),
    pytest.param({"redirect_uris": ["https://app.example/" + "a" * 2000]}, "invalid_redirect_uri",
                 "a redirect URI is too long", id="too-long"),
    pytest.param({"redirect_uris": [f"https://app.example/{i}" for i in range(11)]}, "invalid_redirect_uri",
                 "at most 10 redirect URIs may be registered", id="too-many"),
    pytest.param({"scope": "mcp admin"}, "invalid_client_metadata", "scope names a scope this server does not offer",
                 id="unknown-scope"),
    pytest.param({"scope": ["mcp"]}, "invalid_client_metadata", "scope must be a string of at most 1000 characters",
                 id="scope-array"),
    pytest.param({"token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata",
                 "token_endpoint_auth_method must be one of none, client_secret_basic, client_secret_post",
                 id="private-key-jwt"),
    pytest.param({"token_endpoint_auth_method": "client_secret_jwt"}, "invalid_client_metadata",
                 "token_endpoint_auth_method must be one of none, client_secret_basic, client_secret_post",
                 id="client-secret-jwt"),
    pytest.param({"token_endpoint_auth_method": 1}, "invalid_client_metadata",
                 "token_endpoint_auth_method must be a string of at most 200 characters", id="auth-method-number"),
    pytest.param({"grant_types": ["authorization_code", "implicit"]}, "invalid_client_metadata",
                 "grant_types may contain only authorization_code and refresh_token", id="implicit-grant"),
    pytest.param({"grant_types": ["password"]}, "invalid_client_metadata",
                 "grant_types may contain only authorization_code and refresh_token", id="password-grant"),
    pytest.param({"grant_types": ["refresh_token"]}, "invalid_client_metadata",
                 "grant_types must include authorization_code", id="no-code-grant"),
    pytest.param({"response_types": ["token"]}, "invalid_client_metadata", "response_types may contain only code",
                 id="token-response-type"),
    pytest.param({"response_types": ["code", "token"]}, "invalid_client_metadata",
                 "response_types may contain only code", id="two-response-types"),
    pytest.param({"client_name": "n" * 201}, "invalid_client_metadata",
                 "client_name must be a string of at most 200 characters", id="long-name"),
    pytest.param({"client_name": {"en": "x"}}, "invalid_client_metadata",
                 "client_name must be a string of at most 200 characters", id="name-object"),
    pytest.param({"logo_uri": 5}, "invalid_client_metadata",
                 "logo_uri must be a string of at most 2000 characters", id="logo-number"),
    pytest.param({"application_type": "desktop"}, "invalid_client_metadata",
                 "application_type must be native or web", id="unknown-application-type"),
    pytest.param({"tos_uri": ["https://app.example/tos"]}, "invalid_client_metadata",
                 "tos_uri must be a string of at most 2000 characters", id="tos-uri-array"),
    pytest.param({"contacts": "admin@app.example"}, "invalid_client_metadata",
                 "contacts must be an array of strings", id="contacts-string"),
]

# (field, value, the character named in error_description)
HIDDEN_CHARACTERS = [
    pytest.param("client_name", "x\u0000y", "U+0000", id="name-nul"),
    pytest.param("client_name", "Ring\u0007", "U+0007", id="name-bel"),
    pytest.param("client_name", "\u001b[31mRed", "U+001B", id="name-escape"),
    pytest.param("client_name", "line1\nline2", "U+000A", id="name-newline"),
    pytest.param("client_name", "Good App\u202egnp.exe", "U+202E", id="name-right-to-left-override"),
    pytest.param("client_name", "Good\u2067App", "U+2067", id="name-right-to-left-isolate"),
    pytest.param("client_name", "Claude\u200b Desktop", "U+200B", id="name-zero-width-space"),
    pytest.param("client_name", "App\u2028Other", "U+2028", id="name-line-separator"),
    pytest.param("client_name", "App\ue000", "U+E000", id="name-private-use"),
    pytest.param("client_name", "App\u0378", "U+0378", id="name-unassigned"),
    pytest.param("client_uri", "https://app.example/\u202e", "U+202E", id="client-uri"),
    pytest.param("logo_uri", "https://app.example/\u0000.png", "U+0000", id="logo-uri"),
    pytest.param("tos_uri", "https://app.example/tos\u202e", "U+202E", id="tos-uri"),
    pytest.param("policy_uri", "https://app.example/\u200fpolicy", "U+200F", id="policy-uri"),
    pytest.param("contacts", ["admin@app.example", "\u202eadmin@app.example"], "U+202E", id="contacts"),
]


@pytest.mark.parametrize(("changes", "error", "description"), INVALID_METADATA)
async def test_invalid_metadata_rejected(http, changes, error, description):
    metadata = public()
    metadata.update(changes)
    metadata = {name: value for name, value in metadata.items() if value is not DROP}
    response = await post_metadata(http, metadata)
    status, shown_error, shown = await error_of(response)
    assert status == 400
    assert shown_error == error
    assert shown == description
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(("field", "value", "character"), HIDDEN_CHARACTERS)
async def test_hidden_character_rejected(http, field, value, character):
    response = await post_metadata(http, public(**{field: value}))
    status, error, description = await error_of(response)
    assert status == 400
    # RFC 7591 §3.2.2: a metadata value the server does not accept.
    assert error == "invalid_client_metadata"
    assert description == f"{field} contains {character}, a control, format or unassigned character"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("\u3164", id="hangul-filler"),
        pytest.param("a\u115fb", id="hangul-choseong-filler"),
        pytest.param("\u2800\u2800", id="blank-braille"),
        pytest.param("a\u034f\u0336", id="combining-grapheme-joiner"),
    ],
)
async def test_blank_character_rejected(http, value):
    status, error, description = await error_of(await post_metadata(http, public(client_name=value)))
    assert status == 400
    assert error == "invalid_client_metadata"
    assert description.startswith("client_name contains U+")
    assert description.endswith(", a character that shows as blank")


@pytest.mark.parametrize("query", ["code=evil", "state=x", "x=1&iss=https://evil.example", "error=access_denied"])
async def test_redirect_uri_with_response_parameter_rejected(http, query):
    metadata = public()
    metadata["redirect_uris"] = [f"http://127.0.0.1:3/cb?{query}"]
    status, error, description = await error_of(await post_metadata(http, metadata))
    assert status == 400
    assert error == "invalid_redirect_uri"
    assert description.startswith("a redirect URI must not carry the response parameter ")


async def test_redirect_uri_with_other_query_accepted(http):
    metadata = public()
    metadata["redirect_uris"] = ["http://127.0.0.1:3/cb?tenant=a&codes=1"]
    response = await post_metadata(http, metadata)
    assert response.status == 201, await response.text()


async def test_names_in_any_script_accepted(http):
    # Right-to-left letters, combining marks, CJK and emoji are printable, so they stay allowed.
    name = "\u05e2\u05d5\u05e8\u05da \u0915\u094d\u0937 \u7de8\u96c6 \U0001f680 Caf\u00e9"
    response = await post_metadata(http, public(client_name=name, tos_uri="https://app.example/tos",
                                                contacts=["admin@app.example"]))
    assert response.status == 201, await response.text()
    assert (await response.json())["client_name"] == name


@pytest.mark.parametrize(
    ("application_type", "redirect_uri"),
    [
        pytest.param(None, "https://app.example/callback", id="unset-https"),
        pytest.param(None, "http://127.0.0.1:8000/callback", id="unset-loopback"),
        pytest.param(None, "http://localhost:8000/callback", id="unset-localhost"),
        pytest.param(None, "http://[::1]:8000/callback", id="unset-ipv6-loopback"),
        pytest.param("web", "https://app.example/callback", id="web-https"),
        pytest.param("native", "http://127.0.0.1/callback", id="native-loopback"),
        pytest.param("native", "com.example.app:/oauth/callback", id="native-private-scheme"),
        pytest.param("native", "https://app.example/claimed", id="native-claimed-https"),
    ],
)
async def test_redirect_uri_accepted_for_application_type(http, application_type, redirect_uri):
    metadata = public(redirect_uris=[redirect_uri])
    if application_type is not None:
        metadata["application_type"] = application_type
    response = await post_metadata(http, metadata)
    assert response.status == 201, await response.text()


@pytest.mark.parametrize(
    ("application_type", "redirect_uri", "description"),
    [
        pytest.param(None, "com.example.app:/callback", LOOPBACK_ONLY, id="unset-private-scheme"),
        pytest.param("web", "http://127.0.0.1:8000/callback", WEB_RULE, id="web-loopback"),
        pytest.param("web", "https://127.0.0.1:8000/callback", WEB_RULE, id="web-https-loopback"),
        pytest.param("web", "https://localhost/callback", WEB_RULE, id="web-https-localhost"),
        pytest.param("web", "com.example.app:/callback", WEB_RULE, id="web-private-scheme"),
        pytest.param("native", "http://app.example/callback", NATIVE_RULE, id="native-plain-http"),
        pytest.param("native", "myapp:/callback", NATIVE_RULE, id="native-scheme-without-period"),
        pytest.param("native", "javascript:alert(1)", NATIVE_RULE, id="native-javascript"),
        pytest.param("native", "data:text/html,x", NATIVE_RULE, id="native-data"),
    ],
)
async def test_redirect_uri_rejected_for_application_type(http, application_type, redirect_uri, description):
    metadata = public(redirect_uris=[redirect_uri])
    if application_type is not None:
        metadata["application_type"] = application_type
    status, error, shown = await error_of(await post_metadata(http, metadata))
    assert status == 400
    assert error == "invalid_redirect_uri"
    assert shown == description


@pytest.mark.parametrize(
    ("body", "description"),
    [
        pytest.param(b"{not json", "the body is not valid JSON", id="not-json"),
        pytest.param(b"", "the body is not valid JSON", id="empty"),
        pytest.param(b'{"redirect_uris": ["\xff"]}', "the body is not valid JSON", id="not-utf8"),
        pytest.param('{"redirect_uris": ["http://127.0.0.1/cb"]}'.encode("utf-16"), "the body is not valid JSON",
                     id="utf-16"),
        pytest.param(b'{"redirect_uris": ["http://127.0.0.1/cb"], "client_id_issued_at": NaN}',
                     "the body is not valid JSON", id="nan"),
        pytest.param(b'{"redirect_uris": ["http://127.0.0.1/cb"], "x": -Infinity}', "the body is not valid JSON",
                     id="infinity"),
        pytest.param(b'["https://app.example/cb"]', "the body must be a JSON object", id="array"),
        pytest.param(b"null", "the body must be a JSON object", id="null"),
        pytest.param(b'"text"', "the body must be a JSON object", id="string"),
        pytest.param(b"[" * 30_000 + b"]" * 30_000, "the body is nested too deeply", id="deep-array"),
        pytest.param(b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "the body is nested too deeply", id="deep-object"),
        pytest.param(b'{"redirect_uris": ["http://127.0.0.1/cb"], "client_name": "\\ud800"}',
                     "the body contains an unpaired surrogate escape", id="lone-surrogate-name"),
        pytest.param(b'{"redirect_uris": ["https://app.example/\\udfff"]}',
                     "the body contains an unpaired surrogate escape", id="lone-surrogate-uri"),
    ],
)
async def test_unreadable_body_rejected(http, body, description):
    response = await http.post("/oauth/register", data=body, headers={"Content-Type": "application/json"})
    status, error, shown = await error_of(response)
    assert status == 400
    assert error == "invalid_client_metadata"
    assert shown == description


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "text/plain", "text/json", "multipart/form-data; boundary=x"],
)
async def test_wrong_content_type_rejected(http, content_type):
    body = json.dumps(public())
    response = await http.post("/oauth/register", data=body, headers={"Content-Type": content_type})
    status, error, description = await error_of(response)
    assert status == 400
    assert error == "invalid_request"
    assert description == "the body must be application/json (RFC 7591 section 3.1)"


async def test_json_with_charset_accepted(http):
    body = json.dumps(public())
    response = await http.post("/oauth/register", data=body, headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status == 201


async def test_registration_disabled(aiohttp_client, make_settings):
    http = await start_app(aiohttp_client, make_settings("[registration]\nenabled = false\n"))
    status, error, description = await error_of(await post_metadata(http, public()))
    assert status == 403
    assert error == "access_denied"
    assert description == "dynamic client registration is disabled"


@pytest.fixture
async def gated(aiohttp_client, make_settings):
    """An app whose registration needs an initial access token."""
    return await start_app(aiohttp_client, make_settings('[registration]\ninitial_access_token = "let-me-register"\n'))


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="missing"),
        pytest.param("Bearer wrong", id="wrong"),
        pytest.param("Bearer let-me-register-too", id="longer"),
        pytest.param("Bearer let-me-registe", id="shorter"),
        pytest.param("Basic let-me-register", id="other-scheme"),
        pytest.param("Bearer", id="scheme-only"),
        pytest.param("let-me-register", id="no-scheme"),
    ],
)
async def test_initial_access_token_required(gated, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await post_metadata(gated, public(), headers)
    status, error, description = await error_of(response)
    assert status == 401
    assert error == "invalid_token"
    assert description == "a valid initial access token is required to register (RFC 7591 section 3)"
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
async def test_initial_access_token_accepted(gated, scheme):
    response = await post_metadata(gated, public(), {"Authorization": f"{scheme} let-me-register"})
    assert response.status == 201, await response.text()


async def test_initial_access_token_checked_before_body(gated):
    response = await gated.post("/oauth/register", data=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status == 401


@pytest.fixture
async def capped(aiohttp_client, make_settings):
    return await start_app(aiohttp_client, make_settings("[registration]\nmax_clients = 2\n"))


async def test_registration_cap_reached(capped):
    for _ in range(2):
        assert (await post_metadata(capped, public())).status == 201
    status, error, description = await error_of(await post_metadata(capped, public()))
    assert status == 403
    assert error == "access_denied"
    assert description == "the server has reached its limit of registered clients"


async def test_rejected_registration_not_counted(capped):
    for _ in range(3):
        assert (await post_metadata(capped, public(redirect_uris=["http://app.example/cb"]))).status == 400
    for _ in range(2):
        assert (await post_metadata(capped, public())).status == 201


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_other_method_rejected(http, method):
    response = await http.request(method, "/oauth/register")
    assert response.status == 405


# --- no input makes the endpoint fail --------------------------------------------

ODD_JSON_VALUES: dict[str, object] = {
    "null": None,
    "true": True,
    "negative": -1,
    "huge-float": 1e308,
    "huge-int": 10**4000,
    "empty-string": "",
    "long-string": "x" * 60_000,
    "nul": "\x00",
    "bidi-and-emoji": "\u202e\U0001f511",
    "empty-array": [],
    "mixed-array": [None, 1, {}],
    "bad-ipv6-array": ["http://[::1"],
    "object": {"a": 1},
    "bad-ipv6-string": "http://[::1",
}

METADATA_FIELDS = (
    "redirect_uris", "token_endpoint_auth_method", "grant_types", "response_types", "client_name",
    "client_uri", "logo_uri", "scope", "application_type", "contacts", "jwks",
)

ODD_JSON_BODIES: dict[str, bytes] = {
    "nan-literal": b'{"redirect_uris": NaN}',
    "duplicate-keys": b'{"redirect_uris": ["http://127.0.0.1/cb"], "redirect_uris": 1}',
    "utf8-bom": b"\xef\xbb\xbf{}",
    "lone-surrogate-key": b'{"\\ud800": 1}',
    "nul-bytes": b"\x00" * 100,
    "over-max-body-size": b"{" * 70_000,
    **ODD_BODIES,
}


def odd_registrations(initial_access_token: str) -> dict[str, list[OddRequest]]:
    """Odd registration requests, grouped by kind."""
    path = b"/oauth/register"
    allowed = (b"Authorization", b"Bearer " + initial_access_token.encode())
    json_type = (b"Content-Type", b"application/json")
    valid = json.dumps(public()).encode()
    metadata_values = []
    for name in METADATA_FIELDS:
        for label, value in ODD_JSON_VALUES.items():
            metadata = public(application_type="native")
            metadata[name] = value
            metadata_values.append(OddRequest(f"{name}={label}", b"POST", path, (json_type, allowed), json.dumps(metadata).encode()))
    return {
        "metadata-values": metadata_values,
        "bodies": [OddRequest(label, b"POST", path, (json_type, allowed), body) for label, body in ODD_JSON_BODIES.items()],
        "content-types": [
            OddRequest(label, b"POST", path, (allowed,) if value is None else ((b"Content-Type", value), allowed), valid)
            for label, value in CONTENT_TYPES.items()
        ],
        "authorization-headers": [
            OddRequest(label, b"POST", path, (json_type, (b"Authorization", value)), valid)
            for label, value in authorization_headers(initial_access_token).items()
        ],
        "methods": [OddRequest(method.decode(), method, path, (json_type, allowed), valid) for method in POST_ONLY_METHODS],
    }


@pytest.mark.parametrize("kind", ["metadata-values", "bodies", "content-types", "authorization-headers", "methods"])
async def test_odd_input_no_server_error(aiohttp_client, make_settings, kind):
    toml = NO_RATE_LIMIT + '[registration]\ninitial_access_token = "let-me-register"\n'
    http = await start_app(aiohttp_client, make_settings(toml))
    assert await server_errors(http, odd_registrations("let-me-register")[kind]) == []


async def test_registration_cap_counts_within_unused_ttl(aiohttp_client, make_settings, monkeypatch):
    import time as time_module

    http = await start_app(aiohttp_client, make_settings("[registration]\nmax_clients = 1\nunused_ttl = 60\n"))
    assert (await post_metadata(http, public())).status == 201
    assert (await post_metadata(http, public())).status == 403
    later = time_module.time() + 61
    monkeypatch.setattr(time_module, "time", lambda: later)
    assert (await post_metadata(http, public())).status == 201
