"""Logs never contain credentials: the redaction rules, and a full flow through `serve` at DEBUG."""

from __future__ import annotations

import base64
import io
import json
import logging
import typing
import urllib.parse

import pytest

from frontauth import log
from frontauth.users import add_user, hash_password
from tests.live_client import LiveClient
from tests.oauth_flow import REDIRECT_URI, Client, authorize_params, local_path, new_pkce, parse_form, query_of
from tests.processes import start_frontauth

# --- the redaction rules


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /cb?code=abc123&state=xyz", "GET /cb?code=[redacted]&state=xyz"),
        ("https://app.example/cb?state=s&code=Zm9v%2Fbar#frag", "https://app.example/cb?state=s&code=[redacted]#frag"),
        (
            "grant_type=refresh_token&refresh_token=rt-1&client_secret=cs+with+spaces",
            "grant_type=refresh_token&refresh_token=[redacted]&client_secret=[redacted]",
        ),
        ("code_verifier=v-1&code_challenge=c-1", "code_verifier=[redacted]&code_challenge=c-1"),
        ('{"password": "two words", "username": "bob"}', '{"password": "[redacted]", "username": "bob"}'),
        ('{"access_token":"a\\"b c","token_type":"Bearer"}', '{"access_token":"[redacted]","token_type":"Bearer"}'),
        ("{'client_secret': 'x y', 'n': 1}", "{'client_secret': '[redacted]', 'n': 1}"),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: [redacted]"),
        ("Cookie: a=1; b=2", "Cookie: [redacted]"),
        ("sent Bearer eyJhbGciOiJFUzI1NiJ9.e30.sig", "sent Bearer [redacted]"),
        ("session_token=t redis_password=p server_secret=s", "session_token=[redacted] redis_password=[redacted] server_secret=[redacted]"),
        ("status_code=401 code_challenge_method=S256 token_type=x", "status_code=401 code_challenge_method=S256 token_type=x"),
    ],
    ids=[
        "query-code", "callback-url", "form-body", "verifier-not-challenge", "json-spaces", "json-escaped-quote",
        "python-repr", "authorization-header", "cookie-header", "bearer-anywhere", "suffix-names", "lookalike-names-kept",
    ],
)
def test_redact_replaces_sensitive_values(text: str, expected: str) -> None:
    assert log.redact(text) == expected


def test_configured_fields_are_redacted() -> None:
    """logging.redact adds exact field names, ignoring case."""
    redactor = log.Redactor(["national_id"])
    assert redactor("National_ID=123&name=x") == "National_ID=[redacted]&name=x"
    assert redactor('{"national_id": "123"}') == '{"national_id": "[redacted]"}'


def test_configure_redacts_message_args_and_traceback() -> None:
    """The handler that configure installs redacts %-arguments and exception text."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        log.configure("DEBUG", "text", ["national_id"])
        stream = io.StringIO()
        handler = root.handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(stream)
        logging.getLogger("frontauth.test").info("body %s", "national_id=N4T10NAL&code=c0de")
        try:
            raise ValueError("password=hunter2")
        except ValueError:
            logging.getLogger("frontauth.test").exception("failed")
        output = stream.getvalue()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    # The value has letters, so the all-digit timestamp of the line cannot contain it.
    assert "N4T10NAL" not in output
    assert "c0de" not in output
    assert "hunter2" not in output
    assert "national_id=[redacted]" in output
    assert "ValueError: password=[redacted]" in output


# --- a full flow through `frontauth serve --log-level DEBUG`

PASSWORD = "correct horse battery staple"
WRONG_PASSWORD = "wrong-password-123"
CLIENT_SECRET = "pre-registered-client-secret-0123456789"


class Secrets:
    """Every credential the flow handles, to look for in the log afterwards."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def add(self, name: str, value: str | None) -> None:
        assert value, f"{name} is empty"
        self.values[name] = value


async def sign_in(http: LiveClient, login: str, secrets: Secrets, label: str) -> str:
    """Submit a wrong password, then the right one; return the next Location."""
    page = await http.get(login)
    form = parse_form(await page.text())
    secrets.add(f"{label} login csrf", form["fields"]["csrf_token"])
    wrong = await http.post(form["action"], data={**form["fields"], "username": "alice", "password": WRONG_PASSWORD})
    assert wrong.status == 401
    form = parse_form(await wrong.text())
    good = await http.post(
        form["action"], data={**form["fields"], "username": "alice", "password": PASSWORD}, allow_redirects=False
    )
    assert good.status in (302, 303), await good.text()
    return good.headers["Location"]


async def sign_in_and_approve(http: LiveClient, client_id: str, secrets: Secrets, label: str) -> tuple[str, str]:
    """Run authorize, sign-in when the browser has no session yet, and consent; return (code, verifier)."""
    verifier, challenge = new_pkce()
    secrets.add(f"{label} verifier", verifier)
    params = authorize_params(Client(client_id), challenge)
    response = await http.get("/oauth/authorize", params=params, allow_redirects=False)
    assert response.status == 302, await response.text()
    location = response.headers["Location"]
    if "/oauth/login" in location:
        location = await sign_in(http, local_path(location), secrets, label)
    if "/oauth/consent" in location:
        page = await http.get(local_path(location))
        form = parse_form(await page.text())
        secrets.add(f"{label} consent csrf", form["fields"]["csrf_token"])
        approved = await http.post(form["action"], data={**form["fields"], "decision": "approve"}, allow_redirects=False)
        location = approved.headers["Location"]
    code = query_of(location)["code"]
    secrets.add(f"{label} code", code)
    return code, verifier


async def run_flow(http: LiveClient, secrets: Secrets) -> None:
    """Registration, two code flows, refresh, reuse, replay, userinfo, introspection and revocation."""
    registered = await http.post(
        "/oauth/register",
        json={"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "client_secret_post", "client_name": "Log test"},
    )
    assert registered.status == 201, await registered.text()
    client = await registered.json()
    secrets.add("registered client_secret", client["client_secret"])
    if "registration_access_token" in client:
        secrets.add("registration_access_token", client["registration_access_token"])

    basic = "Basic " + base64.b64encode(f"portal:{CLIENT_SECRET}".encode()).decode()
    code, verifier = await sign_in_and_approve(http, "portal", secrets, "portal")
    exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier}
    issued = await http.post("/oauth/token", data=exchange, headers={"Authorization": basic})
    assert issued.status == 200, await issued.text()
    tokens = await issued.json()
    secrets.add("access token", tokens["access_token"])
    secrets.add("refresh token", tokens["refresh_token"])

    replay = await http.post("/oauth/token", data=exchange, headers={"Authorization": basic})
    assert (await replay.json())["error"] == "invalid_grant"
    wrong_secret = await http.post(
        "/oauth/token", data={**exchange, "client_id": "portal", "client_secret": "not-the-secret-4567"}
    )
    assert wrong_secret.status == 401

    code, verifier = await sign_in_and_approve(http, client["client_id"], secrets, "registered")
    issued = await http.post("/oauth/token", data={
        **exchange, "code": code, "code_verifier": verifier,
        "client_id": client["client_id"], "client_secret": client["client_secret"],
    })
    assert issued.status == 200, await issued.text()
    second = await issued.json()
    secrets.add("second access token", second["access_token"])
    secrets.add("second refresh token", second["refresh_token"])
    credentials = {"client_id": client["client_id"], "client_secret": client["client_secret"]}
    refreshed = await http.post(
        "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"], **credentials}
    )
    assert refreshed.status == 200, await refreshed.text()
    rotated = await refreshed.json()
    secrets.add("rotated access token", rotated["access_token"])
    secrets.add("rotated refresh token", rotated["refresh_token"])
    reuse = await http.post(
        "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"], **credentials}
    )
    assert (await reuse.json())["error"] == "invalid_grant"

    userinfo = await http.get("/oauth/userinfo", headers={"Authorization": "Bearer " + tokens["access_token"]})
    assert userinfo.status in (200, 401)
    introspected = await http.post("/oauth/introspect", data={"token": tokens["access_token"]}, headers={"Authorization": basic})
    assert introspected.status == 200, await introspected.text()
    revoked = await http.post("/oauth/revoke", data={"token": tokens["refresh_token"]}, headers={"Authorization": basic})
    assert revoked.status == 200, await revoked.text()
    # A credential in the query of a URL that no route serves reaches only the access log.
    missing = await http.get("/oauth/callback", params={"code": code, "access_token": tokens["access_token"]})
    assert missing.status == 404

    for cookie in http.session.cookie_jar:
        secrets.add(f"cookie {cookie.key}", cookie.value)


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_debug_log_of_full_flow_has_no_credentials(tmp_path: typing.Any, log_format: str) -> None:
    users = tmp_path / "users.toml"
    add_user(str(users), "alice", PASSWORD, email="alice@example.com")
    config = tmp_path / "frontauth.toml"
    config.write_text(
        f'[login]\nusers_file = "{users}"\n'
        # Without the grace window, so that the flow's second refresh is logged as reuse.
        "[tokens]\nrefresh_grace = 0\n"
        '[[clients]]\nclient_id = "portal"\n'
        f'redirect_uris = ["{REDIRECT_URI}"]\n'
        f'client_secret_hash = "{hash_password(CLIENT_SECRET)}"\n'
        'token_endpoint_auth_method = "client_secret_basic"\n'
    )
    server = start_frontauth(
        str(tmp_path), str(config), env={"FRONTAUTH_LOGGING_FORMAT": log_format}, args=["--log-level", "DEBUG"]
    )
    secrets = Secrets()
    secrets.add("password", PASSWORD)
    secrets.add("wrong password", WRONG_PASSWORD)
    secrets.add("client secret", CLIENT_SECRET)
    http = LiveClient(server.url)
    try:
        await run_flow(http, secrets)
    finally:
        await http.close()
        server.stop()
    output = server.log()

    assert "DEBUG" in output
    assert "POST /oauth/token 200" in output
    assert "GET /oauth/callback 404" in output
    leaked = sorted(
        name for name, value in secrets.values.items()
        if value in output or urllib.parse.quote_plus(value) in output
    )
    assert leaked == []
    if log_format == "json":
        lines = [line for line in output.splitlines() if line.startswith("{")]
        assert lines
        assert all(isinstance(json.loads(line), dict) for line in lines)


def test_line_breaks_in_messages_are_escaped(caplog):
    import logging

    from frontauth.log import RedactingFilter

    logger = logging.getLogger("frontauth.access")
    record = logger.makeRecord("frontauth.access", logging.INFO, __file__, 1, "GET %s 404", ("/x\n2026 INFO FORGED\r",), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "GET /x\\n2026 INFO FORGED\\r 404"
