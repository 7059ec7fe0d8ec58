"""The sign-in and consent pages: CSRF, browser binding, single use, denial and remembered consent."""

from __future__ import annotations

import html.parser
import json
import typing
import urllib.parse

import pytest
from aiohttp.test_utils import TestClient

from frontauth import config
from frontauth.appkeys import SERVICES
from frontauth.stores import ClientRecord
from frontauth.tokens import digest
from frontauth.users import add_user
from tests.oauth_checks import (  # noqa: F401 (settings, unlimited_settings and unlimited are fixtures)
    ISSUER,
    cookie_header,
    error_page,
    page_form,
    settings,
    split_redirect,
    start_app,
    start_authorization,
    unlimited,
    unlimited_settings,
)
from tests.oauth_flow import (
    REDIRECT_URI,
    Client,
    approve,
    authorize_params,
    exchange,
    get_code,
    local_path,
    new_pkce,
    parse_form,
    query_of,
    register,
    sign_in,
)
from tests.odd_requests import FORM_KINDS, form_requests, query_requests, server_errors

TWO_SCOPES = '[scopes]\nmcp = "Use the tools"\nfiles = "Read your files"\n'
EXPIRED_FORM = "The form was not sent from this sign-in page. Return to the application and start again."
EXPIRED_LINK = "The authorization request expired or was already completed. Return to the application and start again."
OTHER_BROWSER = "Start the sign-in again from the application, in this browser."


async def begin(http, client, **extra: str) -> tuple[str, dict[str, str]]:
    """Start an authorization request; return the page Location and the request parameters."""
    _, challenge = new_pkce()
    params = authorize_params(client, challenge, **extra)
    return await start_authorization(http, params), params


async def post_form(http, path: str, fields: dict[str, str]):
    return await http.post(path, data=fields, allow_redirects=False)


async def at_consent(http, client, **extra: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """Sign in; return the consent Location, its form fields and the request parameters."""
    location, params = await begin(http, client, **extra)
    consent = await sign_in(http, location)
    assert urllib.parse.urlsplit(consent).path == "/oauth/consent"
    return consent, await page_form(http, consent), params


async def check_error_page(response, status: int, title: str, description: str) -> None:
    assert response.status == status
    assert "Location" not in response.headers
    assert response.content_type == "text/html"
    page = error_page(await response.text())
    assert page["title"] == title
    assert page["description"] == description


def session_cookie_set(response) -> bool:
    return "frontauth_session" in response.cookies


@pytest.fixture
async def other_browser(http):
    """A second browser (its own cookie jar) on the same server."""
    browser = TestClient(http.server)
    yield browser
    await browser.session.close()


# --- CSRF ------------------------------------------------------------------------


async def test_sign_in_without_csrf_rejected(http):
    client = await register(http)
    location, _ = await begin(http, client)
    fields = await page_form(http, location)
    del fields["csrf_token"]
    fields["username"] = "alice@example.com"
    response = await post_form(http, "/oauth/login", fields)
    await check_error_page(response, 403, "This form has expired", EXPIRED_FORM)
    assert not session_cookie_set(response)


async def test_sign_in_without_csrf_starts_no_session(http):
    client = await register(http)
    location, _ = await begin(http, client)
    fields = await page_form(http, location)
    fields.update(csrf_token="", username="alice@example.com")
    await post_form(http, "/oauth/login", fields)
    again, _ = await begin(http, client)
    assert urllib.parse.urlsplit(again).path == "/oauth/login"


async def test_sign_in_with_other_pending_csrf_rejected(http):
    client = await register(http)
    first, _ = await begin(http, client)
    second, _ = await begin(http, client)
    fields = await page_form(http, first)
    fields["csrf_token"] = (await page_form(http, second))["csrf_token"]
    fields["username"] = "alice@example.com"
    response = await post_form(http, "/oauth/login", fields)
    await check_error_page(response, 403, "This form has expired", EXPIRED_FORM)


async def test_sign_in_with_consent_csrf_rejected(http):
    client = await register(http)
    location, _ = await begin(http, client)
    login_fields = await page_form(http, location)
    consent = await sign_in(http, location)
    login_fields["csrf_token"] = (await page_form(http, consent))["csrf_token"]
    login_fields["username"] = "mallory@example.com"
    response = await post_form(http, "/oauth/login", login_fields)
    await check_error_page(response, 403, "This form has expired", EXPIRED_FORM)


async def test_consent_without_csrf_rejected(http):
    client = await register(http)
    _, fields, _ = await at_consent(http, client)
    del fields["csrf_token"]
    response = await post_form(http, "/oauth/consent", {**fields, "decision": "approve"})
    await check_error_page(response, 403, "This form has expired", EXPIRED_FORM)


async def test_consent_with_other_pending_csrf_rejected(http):
    client = await register(http)
    _, first, _ = await at_consent(http, client, scope="mcp")
    # Signed in now, but consent is not yet remembered: the second request shows the page too.
    second_location, _ = await begin(http, client)
    second = await page_form(http, second_location)
    response = await post_form(http, "/oauth/consent", {**first, "csrf_token": second["csrf_token"], "decision": "approve"})
    await check_error_page(response, 403, "This form has expired", EXPIRED_FORM)


async def test_consent_with_login_csrf_rejected(http):
    client = await register(http)
    location, _ = await begin(http, client)
    login_fields = await page_form(http, location)
    consent = await sign_in(http, location)
    fields = await page_form(http, consent)
    response = await post_form(http, "/oauth/consent", {**fields, "csrf_token": login_fields["csrf_token"], "decision": "approve"})
    await check_error_page(response, 403, "This form has expired", EXPIRED_FORM)


async def test_rejected_consent_keeps_pending(http):
    client = await register(http)
    consent, fields, params = await at_consent(http, client)
    await post_form(http, "/oauth/consent", {**fields, "csrf_token": "forged", "decision": "approve"})
    location = await approve(http, consent)
    assert query_of(location)["state"] == params["state"]


# --- single use ------------------------------------------------------------------


async def test_sign_in_after_pending_used_rejected(http):
    client = await register(http)
    location, _ = await begin(http, client)
    fields = await page_form(http, location)
    await approve(http, await sign_in(http, location))
    response = await post_form(http, "/oauth/login", {**fields, "username": "alice@example.com"})
    await check_error_page(response, 400, "This sign-in link has expired", EXPIRED_LINK)


async def test_consent_replayed_after_approval_rejected(http):
    client = await register(http)
    _, fields, _ = await at_consent(http, client)
    first = await post_form(http, "/oauth/consent", {**fields, "decision": "approve"})
    assert first.status == 302
    replay = await post_form(http, "/oauth/consent", {**fields, "decision": "approve"})
    await check_error_page(replay, 400, "This sign-in link has expired", EXPIRED_LINK)


async def test_consent_replayed_after_denial_rejected(http):
    client = await register(http)
    _, fields, _ = await at_consent(http, client)
    await post_form(http, "/oauth/consent", {**fields, "decision": "deny"})
    replay = await post_form(http, "/oauth/consent", {**fields, "decision": "approve"})
    await check_error_page(replay, 400, "This sign-in link has expired", EXPIRED_LINK)


async def test_consent_page_after_approval_rejected(http):
    client = await register(http)
    consent, _, _ = await at_consent(http, client)
    await approve(http, consent)
    response = await http.get(urllib.parse.urlsplit(consent).path + "?" + urllib.parse.urlsplit(consent).query)
    await check_error_page(response, 400, "This sign-in link has expired", EXPIRED_LINK)


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("", id="missing"),
        pytest.param("?pending=", id="empty"),
        pytest.param("?pending=unknown", id="unknown"),
        pytest.param("?pending=" + "p" * 101, id="too-long"),
    ],
)
@pytest.mark.parametrize("path", ["/oauth/login", "/oauth/consent"])
async def test_unknown_pending_rejected(http, path, query):
    response = await http.get(path + query, allow_redirects=False)
    await check_error_page(response, 400, "This sign-in link has expired", EXPIRED_LINK)


# --- decisions -------------------------------------------------------------------


async def test_deny_redirects_access_denied(http):
    client = await register(http)
    consent, _, params = await at_consent(http, client)
    location = await approve(http, consent, decision="deny")
    base, query = split_redirect(location)
    assert base == REDIRECT_URI
    assert query["error"] == "access_denied"
    assert query["error_description"] == "the user denied the request"
    assert query["state"] == params["state"]
    assert query["iss"] == ISSUER
    assert "code" not in query


async def test_invalid_decision_rejected(http):
    client = await register(http)
    _, fields, _ = await at_consent(http, client)
    response = await post_form(http, "/oauth/consent", {**fields, "decision": "maybe"})
    await check_error_page(response, 400, "Invalid decision", "Choose Approve or Deny.")


async def test_invalid_decision_keeps_pending(http):
    client = await register(http)
    consent, fields, params = await at_consent(http, client)
    await post_form(http, "/oauth/consent", {**fields, "decision": "maybe"})
    location = await approve(http, consent)
    assert query_of(location)["state"] == params["state"]


# --- browser binding -------------------------------------------------------------


async def test_other_browser_cannot_open_sign_in(http, other_browser):
    client = await register(http)
    location, _ = await begin(http, client)
    response = await other_browser.get(urllib.parse.urlsplit(location).path + "?" + urllib.parse.urlsplit(location).query)
    await check_error_page(response, 403, "This sign-in was started elsewhere", OTHER_BROWSER)


async def test_other_browser_cannot_submit_sign_in(http, other_browser):
    client = await register(http)
    location, _ = await begin(http, client)
    fields = await page_form(http, location)
    response = await post_form(other_browser, "/oauth/login", {**fields, "username": "mallory@example.com"})
    await check_error_page(response, 403, "This sign-in was started elsewhere", OTHER_BROWSER)
    assert not session_cookie_set(response)


async def test_other_browser_with_own_flow_cannot_submit_consent(http, other_browser):
    client = await register(http)
    _, fields, _ = await at_consent(http, client)
    # The other browser signs in on its own flow, so it has a session and a browser cookie.
    await at_consent(other_browser, client)
    response = await post_form(other_browser, "/oauth/consent", {**fields, "decision": "approve"})
    await check_error_page(response, 403, "This sign-in was started elsewhere", OTHER_BROWSER)


async def test_other_browser_cannot_open_consent(http, other_browser):
    client = await register(http)
    consent, _, _ = await at_consent(http, client)
    parts = urllib.parse.urlsplit(consent)
    response = await other_browser.get(parts.path + "?" + parts.query, allow_redirects=False)
    await check_error_page(response, 403, "This sign-in was started elsewhere", OTHER_BROWSER)


# --- remembered consent ----------------------------------------------------------


async def test_remembered_consent_skips_page(http):
    client = await register(http)
    await get_code(http, client)
    verifier, challenge = new_pkce()
    params = authorize_params(client, challenge)
    response = await http.get("/oauth/authorize", params=params, allow_redirects=False)
    assert response.status == 302
    base, query = split_redirect(response.headers["Location"])
    assert base == REDIRECT_URI
    assert query["state"] == params["state"]
    assert query["iss"] == ISSUER
    token = await exchange(http, client, query["code"], verifier)
    assert token.status == 200, await token.text()


class ScopeListParser(html.parser.HTMLParser):
    """Collects the scope names on the consent page and whether each is marked new."""

    def __init__(self) -> None:
        super().__init__()
        self.scopes: dict[str, bool] = {}
        self._in_list = False
        self._in_code = False
        self._current: str | None = None

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs_list).get("class") or "").split()
        if tag == "ul" and "scopes" in classes:
            self._in_list = True
        elif self._in_list and tag == "code":
            self._in_code = True
        elif self._in_list and tag == "span" and "new" in classes and self._current:
            self.scopes[self._current] = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "ul":
            self._in_list = False
        elif tag == "code":
            self._in_code = False

    def handle_data(self, data: str) -> None:
        if self._in_code:
            self._current = data.strip()
            self.scopes[self._current] = False


async def test_new_scope_shows_consent_again(aiohttp_client, make_settings):
    http = await start_app(aiohttp_client, make_settings(TWO_SCOPES))
    client = await register(http)
    await get_code(http, client, scope="mcp")
    location, _ = await begin(http, client, scope="mcp files")
    assert urllib.parse.urlsplit(location).path == "/oauth/consent"
    page = await http.get(urllib.parse.urlsplit(location).path + "?" + urllib.parse.urlsplit(location).query)
    parser = ScopeListParser()
    parser.feed(await page.text())
    assert parser.scopes == {"mcp": False, "files": True}


async def test_widened_consent_remembered(aiohttp_client, make_settings):
    http = await start_app(aiohttp_client, make_settings(TWO_SCOPES))
    client = await register(http)
    await get_code(http, client, scope="mcp")
    await get_code(http, client, scope="mcp files")
    location, _ = await begin(http, client, scope="files")
    assert location.startswith(REDIRECT_URI)


async def test_consent_per_client(http):
    client = await register(http)
    other = await register(http)
    await get_code(http, client)
    location, _ = await begin(http, other)
    assert urllib.parse.urlsplit(location).path == "/oauth/consent"


async def test_prompt_consent_shows_page(http):
    client = await register(http)
    await get_code(http, client)
    location, _ = await begin(http, client, prompt="consent")
    assert urllib.parse.urlsplit(location).path == "/oauth/consent"


async def test_prompt_login_shows_sign_in(http):
    client = await register(http)
    await get_code(http, client)
    location, _ = await begin(http, client, prompt="login")
    assert urllib.parse.urlsplit(location).path == "/oauth/login"


async def test_consent_disabled_skips_page(aiohttp_client, make_settings):
    http = await start_app(aiohttp_client, make_settings("[consent]\nenabled = false\n"))
    client = await register(http)
    location, params = await begin(http, client)
    redirect = await sign_in(http, location)
    base, query = split_redirect(redirect)
    assert base == REDIRECT_URI
    assert query["state"] == params["state"]
    assert "code" in query


async def test_consent_not_remembered_when_disabled(aiohttp_client, make_settings):
    http = await start_app(aiohttp_client, make_settings("[consent]\nremember = false\n"))
    client = await register(http)
    await get_code(http, client)
    location, _ = await begin(http, client)
    assert urllib.parse.urlsplit(location).path == "/oauth/consent"


# --- the pages themselves ----------------------------------------------------------


async def test_consent_without_session_redirects_to_sign_in(http):
    client = await register(http)
    location, _ = await begin(http, client)
    pending = query_of(location)["pending"]
    response = await http.get(f"/oauth/consent?pending={pending}", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == f"{ISSUER}/oauth/login?pending={pending}"


async def test_failed_development_sign_in_shows_form(http):
    client = await register(http)
    location, _ = await begin(http, client)
    fields = await page_form(http, location)
    response = await post_form(http, "/oauth/login", {**fields, "username": "not-an-address"})
    assert response.status == 401
    assert "Enter a valid e-mail address." in await response.text()
    assert not session_cookie_set(response)


async def test_wrong_password_rejected(aiohttp_client, make_settings, tmp_path):
    users = tmp_path / "users.toml"
    add_user(str(users), "alice", "right password")
    http = await start_app(aiohttp_client, make_settings(f'[login]\nusers_file = "{users}"\n'))
    client = await register(http)
    location, _ = await begin(http, client)
    fields = await page_form(http, location)
    response = await post_form(http, "/oauth/login", {**fields, "username": "alice", "password": "wrong"})
    assert response.status == 401
    assert "The user name or password is incorrect." in await response.text()
    signed_in = await post_form(http, "/oauth/login", {**fields, "username": "alice", "password": "right password"})
    assert signed_in.status == 303


async def test_client_name_escaped_on_consent(http):
    client = await register(http, client_name='<script>alert("x")</script>')
    consent, _, _ = await at_consent(http, client)
    parts = urllib.parse.urlsplit(consent)
    text = await (await http.get(parts.path + "?" + parts.query)).text()
    assert "<script>" not in text
    assert "&lt;script&gt;" in text


async def test_pages_carry_security_headers(http):
    client = await register(http)
    location, _ = await begin(http, client)
    parts = urllib.parse.urlsplit(location)
    response = await http.get(parts.path + "?" + parts.query)
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "form-action 'self' http://127.0.0.1:33418;" in response.headers["Content-Security-Policy"]


# --- no input makes the pages fail ---------------------------------------------------


@pytest.mark.parametrize("kind", FORM_KINDS)
async def test_odd_input_no_server_error(unlimited, kind):
    client = await register(unlimited)
    location, _ = await begin(unlimited, client)
    login = {**await page_form(unlimited, location), "username": "alice@example.com"}
    consent_location = await sign_in(unlimited, location)
    consent = {**await page_form(unlimited, consent_location), "decision": "approve"}
    cookies = ((b"Cookie", cookie_header(unlimited)),)
    requests = []
    for path, fields in ((b"/oauth/login", login), (b"/oauth/consent", consent)):
        requests += form_requests(path, [fields], client.client_id, cookies)[kind]
        if kind == "parameter-values":
            requests += query_requests(path, {"pending": fields["pending"]}, client.client_id, cookies)[kind]
    assert await server_errors(unlimited, requests) == []


async def test_session_cookie_flags_over_https(aiohttp_client, make_settings):
    settings = make_settings('public_url = "https://auth.example.com"\n[session]\nttl = 1800\n')
    http = await start_app(aiohttp_client, settings)
    client = await register(http)
    _, challenge = new_pkce()
    started = await http.get("/oauth/authorize", params=authorize_params(client, challenge), allow_redirects=False)
    # The test client speaks http, so it keeps a Secure cookie to itself: send it by hand.
    browser = {"Cookie": f"frontauth_browser={started.cookies['frontauth_browser'].value}"}
    page = await http.get(local_path(started.headers["Location"]), headers=browser)
    fields = dict(parse_form(await page.text())["fields"])
    response = await http.post("/oauth/login", data={**fields, "username": "alice@example.com"}, headers=browser,
                               allow_redirects=False)
    assert response.status == 303
    assert started.cookies["frontauth_browser"]["secure"] is True
    cookie = response.cookies["frontauth_session"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["secure"] is True
    assert cookie["max-age"] == "1800"
    assert cookie["path"] == "/oauth"


async def test_session_cookie_not_secure_over_http(http):
    client = await register(http)
    location, _ = await begin(http, client)
    fields = await page_form(http, location)
    response = await post_form(http, "/oauth/login", {**fields, "username": "alice@example.com"})
    assert response.cookies["frontauth_session"]["secure"] == ""


# --- failed sign-ins per user name ------------------------------------------------------


def users_settings(make_settings, tmp_path, extra: str = ""):
    users = tmp_path / "users.toml"
    add_user(str(users), "alice", "right password")
    # trust_proxy lets each request claim its own address, as an attacker with many addresses would.
    return make_settings(
        f'[login]\nusers_file = "{users}"\nmax_failures = 3\n{extra}[server]\ntrust_proxy = true\n'
    )


async def fail_sign_in(http, fields: dict[str, str], username: str, address: str, password: str = "wrong"):
    return await http.post(
        "/oauth/login",
        data={**fields, "username": username, "password": password},
        headers={"X-Forwarded-For": address},
        allow_redirects=False,
    )


@pytest.mark.parametrize("username", ["alice", "nobody"], ids=["existing-user", "unknown-user"])
async def test_failures_per_user_name_limited(aiohttp_client, make_settings, tmp_path, username):
    http = await start_app(aiohttp_client, users_settings(make_settings, tmp_path))
    client = await register(http)
    location, _ = await begin(http, client)
    fields = await page_form(http, location)
    statuses = [(await fail_sign_in(http, fields, username, f"192.0.2.{i}")).status for i in range(3)]
    assert statuses == [401, 401, 401]
    limited = await fail_sign_in(http, fields, username, "192.0.2.200")
    assert limited.status == 429
    assert limited.headers["Retry-After"] == "900"
    assert "Too many failed sign-ins with this user name. Try again in 15 minutes." in await limited.text()
    assert not session_cookie_set(limited)


async def test_limited_user_rejected_with_right_password(aiohttp_client, make_settings, tmp_path):
    http = await start_app(aiohttp_client, users_settings(make_settings, tmp_path))
    client = await register(http)
    location, _ = await begin(http, client)
    fields = await page_form(http, location)
    for i in range(3):
        await fail_sign_in(http, fields, "alice", f"192.0.2.{i}")
    right = await fail_sign_in(http, fields, "ALICE", "192.0.2.9", password="right password")
    assert right.status == 429
    assert not session_cookie_set(right)


async def test_failure_limit_keeps_other_users(aiohttp_client, make_settings, tmp_path):
    http = await start_app(aiohttp_client, users_settings(make_settings, tmp_path))
    client = await register(http)
    location, _ = await begin(http, client)
    fields = await page_form(http, location)
    for i in range(3):
        await fail_sign_in(http, fields, "mallory", f"192.0.2.{i}")
    alice = await fail_sign_in(http, fields, "alice", "192.0.2.9", password="right password")
    assert alice.status == 303


async def test_failure_limit_off(aiohttp_client, make_settings, tmp_path):
    add_user(str(tmp_path / "users.toml"), "alice", "right password")
    http = await start_app(aiohttp_client, make_settings(
        f'[login]\nusers_file = "{tmp_path / "users.toml"}"\nmax_failures = 0\n'))
    client = await register(http)
    location, _ = await begin(http, client)
    fields = await page_form(http, location)
    statuses = [(await fail_sign_in(http, fields, "alice", "192.0.2.1")).status for _ in range(11)]
    assert statuses == [401] * 11


async def test_failure_window_key_omits_name(aiohttp_client, make_settings, tmp_path):
    http = await start_app(aiohttp_client, users_settings(make_settings, tmp_path))
    client = await register(http)
    location, _ = await begin(http, client)
    fields = await page_form(http, location)
    await fail_sign_in(http, fields, "alice-secret-name", "192.0.2.1")
    windows = http.app[SERVICES].driver._windows
    failure_keys = [key for key in windows if ":login_failures:" in key]
    assert len(failure_keys) == 1
    assert "alice-secret-name" not in failure_keys[0]


# --- branding and template override --------------------------------------------------------


async def test_colors_stylesheet_from_settings(aiohttp_client, make_settings):
    http = await start_app(aiohttp_client, make_settings('[pages]\naccent_color = "#0b6e4f"\ntext_color = "#222"\n'))
    response = await http.get("/branding/colors.css")
    assert response.status == 200
    assert response.content_type == "text/css"
    text = await response.text()
    assert "--accent: #0b6e4f;" in text
    assert "--text: #222;" in text
    assert "--bg: #f4f6f8;" in text


@pytest.mark.parametrize("value", ["red", "#12345", "#fff; } body { display: none", "url(x)"])
def test_color_setting_must_be_hex(make_settings, value):
    with pytest.raises(config.ConfigError) as raised:
        make_settings(f'[pages]\naccent_color = "{value}"\n')
    assert str(raised.value).startswith("invalid setting pages.accent_color (from file ")
    assert str(raised.value).endswith(f"expected a colour like #1f5fbf or #fff, got {value!r}")


async def test_logo_served_and_linked(aiohttp_client, make_settings, tmp_path):
    logo = tmp_path / "logo.png"
    logo.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    http = await start_app(aiohttp_client, make_settings(f'[pages]\nlogo_file = "{logo}"\nproduct_name = "Acme"\n'))
    response = await http.get("/branding/logo")
    assert response.status == 200
    assert response.content_type == "image/png"
    assert await response.read() == logo.read_bytes()
    client = await register(http)
    location, _ = await begin(http, client)
    text = await (await http.get(local_path(location))).text()
    assert '<img class="brand-logo" src="/branding/logo" alt=""' in text
    assert "<title>Sign in · Acme</title>" in text


async def test_no_logo_route_without_setting(http):
    response = await http.get("/branding/logo")
    assert response.status == 404


async def test_template_dir_overrides_one_page(aiohttp_client, make_settings, tmp_path):
    folder = tmp_path / "my-templates"
    folder.mkdir()
    (folder / "error.html").write_text(
        '{% extends "base.html" %}{% block content %}<h1>Custom: {{ title }}</h1>{% endblock %}'
    )
    http = await start_app(aiohttp_client, make_settings(f'[pages]\ntemplate_dir = "{folder}"\n'))
    error = await http.get("/oauth/login?pending=unknown")
    assert error.status == 400
    text = await error.text()
    assert "<h1>Custom: This sign-in link has expired</h1>" in text
    assert '<link rel="stylesheet" href="/branding/colors.css">' in text
    client = await register(http)
    location, _ = await begin(http, client)
    login = await http.get(local_path(location))
    assert "<h1>Sign in</h1>" in await login.text()


def test_template_dir_must_exist(make_settings, tmp_path):
    with pytest.raises(config.ConfigError) as raised:
        make_settings(f'[pages]\ntemplate_dir = "{tmp_path / "missing"}"\n')
    assert str(raised.value).endswith(f"folder {str(tmp_path / 'missing')!r} not found")


# --- what the consent page shows about the client ------------------------------------------

CONFIGURED_CLIENT = """
[[clients]]
client_id = "portal"
client_name = "Example Portal"
client_uri = "https://portal.example.com/about"
logo_uri = "https://cdn.example.com/portal.png"
redirect_uris = ["http://127.0.0.1:33418/callback"]
"""


async def consent_text(http, client) -> tuple[str, typing.Any]:
    consent, _, _ = await at_consent(http, client)
    response = await http.get(local_path(consent))
    return await response.text(), response


async def test_configured_client_shown_verified(aiohttp_client, make_settings):
    http = await start_app(aiohttp_client, make_settings(CONFIGURED_CLIENT))
    text, response = await consent_text(http, Client("portal"))
    assert '<p class="client-name"><bdi>Example Portal</bdi></p>' in text
    assert 'class="unverified"' not in text
    assert '<a href="https://portal.example.com/about" rel="noopener noreferrer" target="_blank">portal.example.com</a>' in text
    assert '<img class="client-logo" src="https://cdn.example.com/portal.png"' in text
    assert "img-src 'self' https://cdn.example.com;" in response.headers["Content-Security-Policy"]


async def test_registered_client_shown_unverified(http):
    client = await register(http, client_name="Example Portal", client_uri="https://portal.example.com/",
                            logo_uri="https://cdn.example.com/portal.png")
    text, response = await consent_text(http, client)
    assert '<p class="client-name"><bdi>Example Portal</bdi> <span class="unverified">unverified</span></p>' in text
    assert "This application chose its own name, and nobody has checked it." in text
    assert "portal.example.com" not in text
    assert "cdn.example.com" not in text
    assert "img-src 'self';" in response.headers["Content-Security-Policy"]


LOCAL_NOTICE = "This application receives its answer on this device, at <code>127.0.0.1:33418</code>, not at a web site."
HTTPS_REDIRECT_URI = "https://app.example.com/callback"


async def cache_document(http, url: str, redirect_uri: str) -> Client:
    """Put a client ID metadata document into the shared cache (cimd:{digest}), as fetching url would."""
    services = http.app[SERVICES]
    document = {"client_id": url, "client_name": "Document App", "redirect_uris": [redirect_uri],
                "token_endpoint_auth_method": "none"}
    await services.driver.set(services.stores.key("cimd", digest(url)), json.dumps({"document": document}).encode(), 300)
    return Client(url, redirect_uri=redirect_uri)


@pytest.mark.parametrize(("url", "host"), [
    ("https://app.example.com/oauth/client.json", "app.example.com"),
    ("https://App.Example.com:8443/client.json", "app.example.com:8443"),
    ("https://b\u00fccher.example/client.json", "xn--bcher-kva.example"),
    # IDNA 2008, as yarl encodes the host that aiohttp connects to. IDNA 2003 would show fass.de.
    ("https://fa\u00df.de/client.json", "xn--fa-hia.de"),
    ("https://\uff41pp.example.com/client.json", "app.example.com"),
    ("https://app.example.com:443/client.json", "app.example.com"),
    ("https://[2001:db8::1]:8443/client.json", "[2001:db8::1]:8443"),
])
async def test_document_client_shows_its_host(http, url, host):
    client = await cache_document(http, url, HTTPS_REDIRECT_URI)
    text, _ = await consent_text(http, client)
    assert '<p class="client-name"><bdi>Document App</bdi> <span class="unverified">unverified</span></p>' in text
    assert f'<p class="client-document">Described by a document on <strong>{host}</strong></p>' in text
    assert "local-notice" not in text


async def test_document_client_on_loopback_marked_local(http):
    client = await cache_document(http, "https://app.example.com/client.json", REDIRECT_URI)
    text, _ = await consent_text(http, client)
    assert "<strong>app.example.com</strong>" in text
    assert '<span class="local">on this device</span>' in text
    assert LOCAL_NOTICE in text


@pytest.mark.parametrize(("redirect_uris", "local"), [
    ([REDIRECT_URI], True),
    ([REDIRECT_URI, "http://localhost:8765/callback", "http://[::1]/callback"], True),
    ([REDIRECT_URI, HTTPS_REDIRECT_URI], False),
])
async def test_local_mark_needs_all_redirects_loopback(http, redirect_uris, local):
    client = await register(http, redirect_uris=redirect_uris)
    text, _ = await consent_text(http, client)
    assert (LOCAL_NOTICE in text) is local
    assert ('class="local"' in text) is local
    assert "client-document" not in text


async def test_configured_https_client_not_marked_local(aiohttp_client, make_settings):
    configured = CONFIGURED_CLIENT.replace('redirect_uris = ["http://127.0.0.1:33418/callback"]',
                                           f'redirect_uris = ["{HTTPS_REDIRECT_URI}"]')
    http = await start_app(aiohttp_client, make_settings(configured))
    text, _ = await consent_text(http, Client("portal", redirect_uri=HTTPS_REDIRECT_URI))
    assert '<p class="client-name"><bdi>Example Portal</bdi></p>' in text
    assert 'class="local"' not in text
    assert "local-notice" not in text
    assert "client-document" not in text


def test_configured_client_logo_must_be_https(make_settings):
    with pytest.raises(config.ConfigError) as raised:
        make_settings(CONFIGURED_CLIENT.replace("https://cdn.example.com", "http://cdn.example.com"))
    assert str(raised.value).endswith("expected an https URL, got 'http://cdn.example.com/portal.png'")


async def test_consent_shows_scope_descriptions(aiohttp_client, make_settings):
    http = await start_app(aiohttp_client, make_settings(TWO_SCOPES))
    client = await register(http)
    text, _ = await consent_text(http, client)
    assert '<span class="scope-description">Use the tools</span> <code>mcp</code>' in text


# --- denial without a redirect ------------------------------------------------------------


async def remove_client(http, client_id: str) -> None:
    services = http.app[SERVICES]
    assert await services.driver.delete(services.stores.key("client", client_id))


async def test_deny_after_client_removed_shows_close_page(http):
    client = await register(http)
    _, fields, _ = await at_consent(http, client)
    await remove_client(http, client.client_id)
    response = await post_form(http, "/oauth/consent", {**fields, "decision": "deny"})
    assert response.status == 200
    assert "Location" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    text = await response.text()
    assert "<h1>Access denied</h1>" in text
    assert "You may close this window." in text


async def test_approve_after_client_removed_rejected(http):
    client = await register(http)
    _, fields, _ = await at_consent(http, client)
    await remove_client(http, client.client_id)
    response = await post_form(http, "/oauth/consent", {**fields, "decision": "approve"})
    await check_error_page(response, 400, "Unknown application", "The application was removed while you were signing in.")


@pytest.mark.parametrize("path", ["/oauth/login?pending=unknown", "/branding/colors.css", "/static/frontauth.css"])
async def test_every_page_forbids_framing(http, path):
    response = await http.get(path)
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


async def test_pages_carry_no_inline_code(http):
    client = await register(http)
    location, _ = await begin(http, client)
    sign_in_page = await (await http.get(local_path(location))).text()
    consent = await sign_in(http, location)
    consent_page = await (await http.get(local_path(consent))).text()
    error = await (await http.get("/oauth/consent?pending=unknown")).text()
    for text in (sign_in_page, consent_page, error):
        assert "<script" not in text
        assert "<style" not in text
        assert " style=" not in text
        assert ' href="http' not in text


@pytest.mark.parametrize(("client_name", "shown"), [
    ("Good App\u202egnp.exe", "Good App\ufffdgnp.exe"),
    ("x\u0000y\u0007", "x\ufffdy\ufffd"),
    ("\u05e2\u05d5\u05e8\u05da", "\u05e2\u05d5\u05e8\u05da"),
])
async def test_stored_client_name_isolated(http, client_name, shown):
    # Registration now rejects these characters; a client stored before that still reaches the pages.
    record = ClientRecord(client_id="old-client", redirect_uris=[REDIRECT_URI], client_name=client_name, dynamic=True)
    assert await http.app[SERVICES].stores.create_client(record)
    client = Client(record.client_id)
    location, _ = await begin(http, client)
    sign_in_page = await (await http.get(local_path(location))).text()
    consent_page, _ = await consent_text(http, client)
    for text in (sign_in_page, consent_page):
        assert f'<p class="client-name"><bdi>{shown}</bdi> <span class="unverified">unverified</span></p>' in text
        assert "\u202e" not in text
        assert "\u0000" not in text


async def test_stored_client_not_configured_unverified(http):
    # Stored but not registered here, as a client from a client ID metadata document is.
    record = ClientRecord(client_id="stored-client", redirect_uris=[REDIRECT_URI],
                          client_name="Example App", client_uri="https://app.example.com/",
                          logo_uri="https://app.example.com/logo.png", dynamic=False)
    assert await http.app[SERVICES].stores.create_client(record)
    text, response = await consent_text(http, Client(record.client_id))
    assert '<p class="client-name"><bdi>Example App</bdi> <span class="unverified">unverified</span></p>' in text
    assert "app.example.com/logo.png" not in text
    assert 'href="https://app.example.com/"' not in text
    assert "img-src 'self';" in response.headers["Content-Security-Policy"]
