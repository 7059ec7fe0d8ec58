"""The token endpoint as a whole: grant types, client authentication and request parsing."""

from __future__ import annotations

import base64
import urllib.parse

import pytest

from frontauth.users import hash_password
from tests.oauth_checks import (  # noqa: F401 (settings, unlimited_settings and unlimited are fixtures)
    FORM,
    basic,
    settings,
    start_app,
    unlimited,
    unlimited_settings,
)
from tests.oauth_flow import REDIRECT_URI, Client, exchange, get_code, refresh, register
from tests.odd_requests import FORM_KINDS, form_requests, server_errors

SECRET = "correct horse battery staple"
# A secret with the characters RFC 6749 §2.3.1 requires Basic credentials to form-urlencode.
SPECIAL_SECRET = "p:ss w+rd%&="
_SECRET_HASH = hash_password(SECRET)
_SPECIAL_HASH = hash_password(SPECIAL_SECRET)

CONFIDENTIAL_CLIENTS = f"""
[[clients]]
client_id = "backend"
client_name = "Backend"
redirect_uris = ["{REDIRECT_URI}"]
client_secret_hash = "{_SECRET_HASH}"

[[clients]]
client_id = "backend-post"
redirect_uris = ["{REDIRECT_URI}"]
client_secret_hash = "{_SECRET_HASH}"
token_endpoint_auth_method = "client_secret_post"

[[clients]]
client_id = "backend:special"
redirect_uris = ["{REDIRECT_URI}"]
client_secret_hash = "{_SPECIAL_HASH}"
"""

UNSUPPORTED = "supported grant types are authorization_code and refresh_token"
AUTH_FAILED = "client authentication failed"


def code_form(code: str, verifier: str, **extra: str) -> dict[str, str]:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier}
    form.update(extra)
    return form


async def post_token(http, form, authorization: str | None = None):
    headers = {"Authorization": authorization} if authorization is not None else {}
    return await http.post("/oauth/token", data=form, headers=headers)


async def error_of(response) -> tuple[int, str, str]:
    body = await response.json()
    return response.status, body["error"], body["error_description"]


@pytest.fixture
async def confidential(aiohttp_client, make_settings):
    """An app with pre-registered confidential clients."""
    return await start_app(aiohttp_client, make_settings(CONFIDENTIAL_CLIENTS))


# --- grant types -------------------------------------------------------------


@pytest.mark.parametrize(
    "grant_type",
    [
        "password",
        "client_credentials",
        "implicit",
        "token",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "AUTHORIZATION_CODE",
    ],
)
async def test_unsupported_grant_type_rejected(http, grant_type):
    client = await register(http)
    form = {"grant_type": grant_type, "client_id": client.client_id, "username": "alice", "password": "x"}
    response = await post_token(http, form)
    status, error, description = await error_of(response)
    assert status == 400
    assert error == "unsupported_grant_type"
    assert description == UNSUPPORTED
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("grant_type", [pytest.param("", id="empty"), pytest.param(None, id="missing")])
async def test_missing_grant_type_rejected(http, grant_type):
    client = await register(http)
    form = {"client_id": client.client_id}
    if grant_type is not None:
        form["grant_type"] = grant_type
    status, error, description = await error_of(await post_token(http, form))
    assert status == 400
    assert error == "invalid_request"
    assert description == "grant_type is required"


async def test_unknown_parameters_ignored(http):
    client = await register(http)
    code, verifier, _ = await get_code(http, client)
    response = await exchange(http, client, code, verifier, nonce="n", scope="admin", extra="1")
    assert response.status == 200, await response.text()


# --- client authentication ---------------------------------------------------


async def test_confidential_client_basic_accepted(confidential):
    code, verifier, _ = await get_code(confidential, Client("backend"))
    response = await post_token(confidential, code_form(code, verifier), basic("backend", SECRET))
    assert response.status == 200, await response.text()


async def test_confidential_client_post_accepted(confidential):
    code, verifier, _ = await get_code(confidential, Client("backend-post"))
    form = code_form(code, verifier, client_id="backend-post", client_secret=SECRET)
    response = await post_token(confidential, form)
    assert response.status == 200, await response.text()


async def test_encoded_basic_credentials_accepted(confidential):
    code, verifier, _ = await get_code(confidential, Client("backend:special"))
    response = await post_token(confidential, code_form(code, verifier), basic("backend:special", SPECIAL_SECRET))
    assert response.status == 200, await response.text()


@pytest.mark.parametrize(
    ("client_id", "how"),
    [
        pytest.param("backend", "basic", id="basic"),
        pytest.param("backend-post", "post", id="post"),
    ],
)
async def test_wrong_secret_rejected(confidential, client_id, how):
    code, verifier, _ = await get_code(confidential, Client(client_id))
    if how == "basic":
        response = await post_token(confidential, code_form(code, verifier), basic(client_id, "wrong"))
    else:
        response = await post_token(confidential, code_form(code, verifier, client_id=client_id, client_secret="wrong"))
    status, error, description = await error_of(response)
    assert status == 401
    assert error == "invalid_client"
    assert description == AUTH_FAILED
    assert response.headers["WWW-Authenticate"] == 'Basic realm="frontauth"'
    assert response.headers["Cache-Control"] == "no-store"


async def test_wrong_secret_keeps_code(confidential):
    code, verifier, _ = await get_code(confidential, Client("backend"))
    await post_token(confidential, code_form(code, verifier), basic("backend", "wrong"))
    response = await post_token(confidential, code_form(code, verifier), basic("backend", SECRET))
    assert response.status == 200, await response.text()


async def test_basic_client_secret_in_body_rejected(confidential):
    code, verifier, _ = await get_code(confidential, Client("backend"))
    response = await post_token(confidential, code_form(code, verifier, client_id="backend", client_secret=SECRET))
    status, error, description = await error_of(response)
    assert status == 401
    assert error == "invalid_client"
    assert description == AUTH_FAILED
    assert "WWW-Authenticate" in response.headers


async def test_post_client_secret_in_header_rejected(confidential):
    code, verifier, _ = await get_code(confidential, Client("backend-post"))
    response = await post_token(confidential, code_form(code, verifier), basic("backend-post", SECRET))
    status, error, description = await error_of(response)
    assert status == 401
    assert error == "invalid_client"
    assert description == AUTH_FAILED


async def test_missing_secret_rejected(confidential):
    code, verifier, _ = await get_code(confidential, Client("backend"))
    response = await post_token(confidential, code_form(code, verifier, client_id="backend"))
    status, error, description = await error_of(response)
    assert status == 401
    assert error == "invalid_client"
    assert description == AUTH_FAILED


async def test_secret_in_header_and_body_rejected(confidential):
    code, verifier, _ = await get_code(confidential, Client("backend"))
    form = code_form(code, verifier, client_id="backend", client_secret=SECRET)
    status, error, description = await error_of(await post_token(confidential, form, basic("backend", SECRET)))
    assert status == 400
    assert error == "invalid_request"
    assert description == "client credentials must be sent in one way only, not in both the header and the body"


async def test_basic_and_body_client_id_differ_rejected(confidential):
    code, verifier, _ = await get_code(confidential, Client("backend"))
    form = code_form(code, verifier, client_id="backend-post")
    status, error, description = await error_of(await post_token(confidential, form, basic("backend", SECRET)))
    assert status == 400
    assert error == "invalid_request"
    assert description == "client_id in the body differs from the Authorization header"


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("Basic", id="no-credentials"),
        pytest.param("Basic ", id="empty-credentials"),
        pytest.param("Basic !!!!", id="not-base64"),
        pytest.param("Basic YmFja2VuZA", id="missing-padding"),
        pytest.param("Basic " + base64.b64encode(b"backend").decode(), id="no-colon"),
        pytest.param("Basic " + base64.b64encode(b"backend:\xff").decode(), id="not-utf8"),
    ],
)
async def test_malformed_basic_rejected(confidential, header):
    code, verifier, _ = await get_code(confidential, Client("backend"))
    response = await post_token(confidential, code_form(code, verifier), header)
    status, error, description = await error_of(response)
    assert status == 401
    assert error == "invalid_client"
    assert description == "malformed Basic credentials"
    assert response.headers["WWW-Authenticate"] == 'Basic realm="frontauth"'


@pytest.mark.parametrize("header", ["Bearer abc", "Digest username=backend", "Negotiate"])
async def test_other_authentication_scheme_rejected(confidential, header):
    code, verifier, _ = await get_code(confidential, Client("backend"))
    response = await post_token(confidential, code_form(code, verifier), header)
    status, error, description = await error_of(response)
    assert status == 401
    assert error == "invalid_client"
    assert description == "unsupported authentication scheme"
    assert "WWW-Authenticate" in response.headers


async def test_unknown_client_rejected(http):
    verifier = "v" * 43
    response = await post_token(http, code_form("code", verifier, client_id="no-such-client"))
    status, error, description = await error_of(response)
    assert status == 401
    assert error == "invalid_client"
    assert description == AUTH_FAILED
    assert "WWW-Authenticate" in response.headers


async def test_unknown_client_basic_rejected(http):
    response = await post_token(http, code_form("code", "v" * 43), basic("no-such-client", "x"))
    status, error, description = await error_of(response)
    assert status == 401
    assert error == "invalid_client"
    assert description == AUTH_FAILED


async def test_missing_client_rejected(http):
    status, error, description = await error_of(await post_token(http, code_form("code", "v" * 43)))
    assert status == 401
    assert error == "invalid_client"
    assert description == "client authentication is required"


async def test_public_client_with_secret_rejected(http):
    client = await register(http)
    code, verifier, _ = await get_code(http, client)
    response = await exchange(http, client, code, verifier, client_secret="anything")
    status, error, description = await error_of(response)
    assert status == 401
    assert error == "invalid_client"
    assert description == AUTH_FAILED


async def test_refresh_requires_client_secret(confidential):
    code, verifier, _ = await get_code(confidential, Client("backend"))
    tokens = await (await post_token(confidential, code_form(code, verifier), basic("backend", SECRET))).json()
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": "backend"}
    status, error, _ = await error_of(await post_token(confidential, form))
    assert status == 401
    assert error == "invalid_client"


async def test_refresh_with_client_secret_accepted(confidential):
    code, verifier, _ = await get_code(confidential, Client("backend"))
    tokens = await (await post_token(confidential, code_form(code, verifier), basic("backend", SECRET))).json()
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    response = await post_token(confidential, form, basic("backend", SECRET))
    assert response.status == 200, await response.text()


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_registered_confidential_client_wrong_secret_rejected(http, method):
    client = await register(http, token_endpoint_auth_method=method)
    code, verifier, _ = await get_code(http, client)
    if method == "client_secret_basic":
        response = await post_token(http, code_form(code, verifier), basic(client.client_id, "wrong"))
    else:
        response = await exchange(http, client, code, verifier, client_secret="wrong")
    status, error, description = await error_of(response)
    assert status == 401
    assert error == "invalid_client"
    assert description == AUTH_FAILED
    assert response.headers["WWW-Authenticate"] == 'Basic realm="frontauth"'


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_registered_confidential_client_wrong_method_rejected(http, method):
    client = await register(http, token_endpoint_auth_method=method)
    code, verifier, _ = await get_code(http, client)
    if method == "client_secret_post":
        response = await post_token(http, code_form(code, verifier), basic(client.client_id, client.client_secret))
    else:
        response = await exchange(http, client, code, verifier, client_secret=client.client_secret)
    status, error, description = await error_of(response)
    assert status == 401
    assert error == "invalid_client"
    assert description == AUTH_FAILED


# --- request parsing -----------------------------------------------------------


async def test_json_body_rejected(http):
    client = await register(http)
    response = await http.post("/oauth/token", json={"grant_type": "refresh_token", "refresh_token": "x",
                                                     "client_id": client.client_id})
    status, error, description = await error_of(response)
    assert status == 400
    assert error == "invalid_request"
    assert description == "the body must be application/x-www-form-urlencoded"
    assert response.headers["Cache-Control"] == "no-store"


async def test_body_over_limit_rejected(aiohttp_client, make_settings):
    http = await start_app(aiohttp_client, make_settings("[server]\nmax_body_size = 2048\n"))
    response = await http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": "x" * 3000})
    assert response.status == 413
    assert response.content_type == "application/json"
    assert await response.json() == {"error": "invalid_request", "error_description": "request body is too large"}
    assert response.headers["Cache-Control"] == "no-store"


async def test_body_not_utf8_rejected(http):
    response = await http.post("/oauth/token", data=b"grant_type=refresh_token&refresh_token=\xff\xfe",
                               headers={"Content-Type": FORM})
    status, error, description = await error_of(response)
    assert status == 400
    assert error == "invalid_request"
    assert description == "the body is not valid UTF-8"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"grant_type=refresh_token&refresh_token=%ff%fe", id="escaped-invalid-utf8"),
        pytest.param(b"&".join(b"p%d=1" % i for i in range(101)), id="101-parameters"),
    ],
)
async def test_malformed_body_rejected(http, body):
    status, error, description = await error_of(await http.post("/oauth/token", data=body, headers={"Content-Type": FORM}))
    assert status == 400
    assert error == "invalid_request"
    assert description == "malformed parameters"


@pytest.mark.parametrize("name", ["grant_type", "code", "code_verifier", "redirect_uri", "client_id"])
async def test_duplicated_parameter_rejected(http, name):
    client = await register(http)
    code, verifier, _ = await get_code(http, client)
    form = code_form(code, verifier, client_id=client.client_id)
    body = urllib.parse.urlencode(list(form.items()) + [(name, form[name])])
    response = await http.post("/oauth/token", data=body, headers={"Content-Type": FORM})
    status, error, description = await error_of(response)
    assert status == 400
    assert error == "invalid_request"
    assert description == f"parameter {name} is included more than once"


async def test_duplicated_parameter_keeps_code(http):
    client = await register(http)
    code, verifier, _ = await get_code(http, client)
    form = code_form(code, verifier, client_id=client.client_id)
    body = urllib.parse.urlencode(list(form.items()) + [("code", code)])
    await http.post("/oauth/token", data=body, headers={"Content-Type": FORM})
    response = await exchange(http, client, code, verifier)
    assert response.status == 200, await response.text()


async def test_duplicated_refresh_token_rejected(http):
    client = await register(http)
    pairs = [("grant_type", "refresh_token"), ("refresh_token", "a"), ("refresh_token", "b"),
             ("client_id", client.client_id)]
    response = await http.post("/oauth/token", data=urllib.parse.urlencode(pairs), headers={"Content-Type": FORM})
    status, error, description = await error_of(response)
    assert status == 400
    assert error == "invalid_request"
    assert description == "parameter refresh_token is included more than once"


@pytest.mark.parametrize(
    ("value", "description"),
    [
        pytest.param("a\x00b", "parameter code contains a NUL character", id="nul"),
        pytest.param("c" * 4097, "parameter code is too long", id="too-long"),
    ],
)
async def test_bad_value_rejected(http, value, description):
    client = await register(http)
    response = await exchange(http, client, value, "v" * 43)
    status, error, shown = await error_of(response)
    assert status == 400
    assert error == "invalid_request"
    assert shown == description


async def test_form_with_charset_accepted(http):
    client = await register(http)
    code, verifier, _ = await get_code(http, client)
    body = urllib.parse.urlencode(code_form(code, verifier, client_id=client.client_id))
    response = await http.post("/oauth/token", data=body, headers={"Content-Type": FORM + "; charset=UTF-8"})
    assert response.status == 200, await response.text()


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_other_method_rejected(http, method):
    response = await http.request(method, "/oauth/token")
    assert response.status == 405


async def test_token_response_not_cached(http):
    client = await register(http)
    code, verifier, _ = await get_code(http, client)
    response = await exchange(http, client, code, verifier)
    assert response.headers["Cache-Control"] == "no-store"
    tokens = await response.json()
    refreshed = await refresh(http, client, tokens["refresh_token"])
    assert refreshed.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("form", "status"),
    [
        pytest.param({"grant_type": "password"}, 400, id="unsupported-grant"),
        pytest.param({"grant_type": "authorization_code", "client_id": "nobody"}, 401, id="unknown-client"),
        pytest.param({"grant_type": "refresh_token", "client_id": "REGISTERED", "refresh_token": "x"}, 400,
                     id="invalid-grant"),
        pytest.param({"grant_type": "authorization_code", "client_id": "REGISTERED"}, 400, id="missing-code"),
    ],
)
async def test_error_response_not_cached(http, form, status):
    client = await register(http)
    form = {k: client.client_id if v == "REGISTERED" else v for k, v in form.items()}
    response = await post_token(http, form)
    assert response.status == status
    assert response.headers["Cache-Control"] == "no-store"
    assert response.content_type == "application/json"


# --- no input makes the endpoint fail --------------------------------------------


@pytest.mark.parametrize("kind", FORM_KINDS)
async def test_odd_input_no_server_error(unlimited, kind):
    client = await register(unlimited, token_endpoint_auth_method="client_secret_post")
    basic_client = await register(unlimited, token_endpoint_auth_method="client_secret_basic")
    code, verifier, _ = await get_code(unlimited, client)
    code_grant = code_form(code, verifier, client_id=client.client_id, client_secret=client.client_secret,
                           resource="http://127.0.0.1:8080/mcp")
    refresh_grant = {"grant_type": "refresh_token", "refresh_token": "r" * 43, "scope": "mcp",
                     "client_id": client.client_id, "client_secret": client.client_secret}
    # Without credentials in the body, a Basic header naming basic_client reaches the secret check.
    bare = {"grant_type": "refresh_token", "refresh_token": "r" * 43}
    requests = form_requests(b"/oauth/token", [code_grant, refresh_grant], basic_client.client_id, valid_fields=bare)
    assert await server_errors(unlimited, requests[kind]) == []
