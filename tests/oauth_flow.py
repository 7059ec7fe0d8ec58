"""Helpers that play an MCP client and a person's browser against a test app."""

from __future__ import annotations

import base64
import hashlib
import html.parser
import secrets
import typing
import urllib.parse

import attrs
from aiohttp.test_utils import TestClient

REDIRECT_URI = "http://127.0.0.1:33418/callback"


class FormParser(html.parser.HTMLParser):
    """Collects the action and inputs of every form on a page."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, typing.Any]] = []

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs_list)
        if tag == "form":
            self.forms.append({"action": attributes.get("action"), "fields": {}})
        elif tag == "input" and self.forms and attributes.get("name"):
            self.forms[-1]["fields"][attributes["name"]] = attributes.get("value") or ""


def parse_form(page: str) -> dict[str, typing.Any]:
    parser = FormParser()
    parser.feed(page)
    assert len(parser.forms) == 1, f"expected one form, found {len(parser.forms)}"
    return parser.forms[0]


def new_pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@attrs.define
class Client:
    client_id: str
    client_secret: str | None = None
    redirect_uri: str = REDIRECT_URI


async def register(http: TestClient, **metadata: typing.Any) -> Client:
    body = {"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none", "client_name": "Test client"}
    body.update(metadata)
    response = await http.post("/oauth/register", json=body)
    assert response.status == 201, await response.text()
    data = await response.json()
    return Client(data["client_id"], data.get("client_secret"), body["redirect_uris"][0])


def authorize_params(client: Client, challenge: str, **extra: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uri,
        "state": "state-" + secrets.token_hex(4),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "scope": "mcp",
    }
    params.update(extra)
    return params


def query_of(location: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def local_path(location: str) -> str:
    parts = urllib.parse.urlsplit(location)
    return parts.path + ("?" + parts.query if parts.query else "")


async def sign_in(http: TestClient, login_location: str, username: str = "alice@example.com", password: str = "") -> str:
    """Submit the sign-in form; return the next Location."""
    page = await http.get(local_path(login_location))
    assert page.status == 200, await page.text()
    form = parse_form(await page.text())
    fields = dict(form["fields"])
    fields.update(username=username, password=password)
    response = await http.post(form["action"], data=fields, allow_redirects=False)
    assert response.status in (302, 303), await response.text()
    return response.headers["Location"]


async def approve(http: TestClient, consent_location: str, decision: str = "approve") -> str:
    page = await http.get(local_path(consent_location))
    assert page.status == 200, await page.text()
    form = parse_form(await page.text())
    fields = dict(form["fields"])
    fields["decision"] = decision
    response = await http.post(form["action"], data=fields, allow_redirects=False)
    assert response.status in (302, 303), await response.text()
    return response.headers["Location"]


async def get_code(http: TestClient, client: Client, **extra: str) -> tuple[str, str, dict[str, str]]:
    """Run authorize, sign-in and consent; return (code, code_verifier, redirect query)."""
    verifier, challenge = new_pkce()
    params = authorize_params(client, challenge, **extra)
    response = await http.get("/oauth/authorize", params=params, allow_redirects=False)
    assert response.status == 302, await response.text()
    location = response.headers["Location"]
    if "/oauth/login" in location:
        location = await sign_in(http, location)
    if "/oauth/consent" in location:
        location = await approve(http, location)
    assert location.startswith(client.redirect_uri), location
    query = query_of(location)
    assert query["state"] == params["state"]
    return query["code"], verifier, query


async def exchange(http: TestClient, client: Client, code: str, verifier: str, **extra: str) -> typing.Any:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": client.redirect_uri,
        "code_verifier": verifier,
        "client_id": client.client_id,
    }
    form.update(extra)
    return await http.post("/oauth/token", data=form)


async def refresh(http: TestClient, client: Client, refresh_token: str, **extra: str) -> typing.Any:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client.client_id}
    form.update(extra)
    return await http.post("/oauth/token", data=form)
