"""The client side of the benchmark: an MCP client and its user's browser.

Each load worker owns one :class:`Browser`: its own cookie jar (so its own
signed-in session at the server), its own registered public client, and two
keep-alive connections. The browser's connection carries the session cookie to
the authorization, sign-in and consent pages. The MCP client's connection
calls the registration and token endpoints without cookies, because an MCP
client is a separate program that does not share the browser's cookie jar.
Set-up runs the first flow through the sign-in and consent pages that the
server shows. After that the server remembers the session and the consent,
so :meth:`Browser.authorize_code` gets the code in one request.
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import json
import secrets
import typing
import urllib.parse

import aiohttp
import attrs

from bench.loopback import check_loopback, check_loopback_address

# The client's redirect URI. Nothing listens there: the benchmark reads the
# code from the Location header and never follows the redirect.
REDIRECT_URI = "http://127.0.0.1:33418/callback"
REQUEST_TIMEOUT = 10.0
MAX_SETUP_HOPS = 8


class FlowError(Exception):
    """A step of the flow got an unexpected response; ``kind`` names the step."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


@attrs.frozen
class Endpoints:
    """Paths of one server's endpoints; None where the server has no such endpoint."""

    token: str
    register: str | None = None
    authorize: str | None = None
    register_extra: typing.Mapping[str, typing.Any] = attrs.field(factory=dict)


def new_pkce() -> tuple[str, str]:
    """Return a new PKCE code_verifier and its S256 code_challenge (RFC 7636 §4.2)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class _FormReader(html.parser.HTMLParser):
    """Reads the first form of a page: its action and the name and value of each field and button."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.buttons: dict[str, list[str]] = {}
        self._in_form = False
        self._done = False

    def handle_starttag(self, tag: str, attributes: list[tuple[str, str | None]]) -> None:
        attrs_map = dict(attributes)
        if self._done:
            return
        if tag == "form":
            self._in_form = True
            self.action = attrs_map.get("action") or ""
        elif self._in_form and tag == "input" and attrs_map.get("name"):
            self.fields[attrs_map["name"] or ""] = attrs_map.get("value") or ""
        elif self._in_form and tag == "button" and attrs_map.get("name"):
            self.buttons.setdefault(attrs_map["name"] or "", []).append(attrs_map.get("value") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._in_form:
            self._in_form = False
            self._done = True


class Browser:
    """One person's browser and the MCP client it signs in to.

    Args:
        base_url: the server's origin, a loopback URL.
        endpoints: paths of the server's endpoints.
        resource: the RFC 8707 resource to ask tokens for.
        user: the e-mail address typed into a sign-in form.
        source_address: the loopback address to connect from, so that each
            browser is a distinct client address to the server's rate limiter.
    """

    def __init__(self, base_url: str, endpoints: Endpoints, resource: str, user: str,
                 source_address: str | None = None) -> None:
        self.base_url = check_loopback(base_url).rstrip("/")
        self.endpoints = endpoints
        self.resource = resource
        self.user = user
        self.client_id = ""
        local_addr = (check_loopback_address(source_address), 0) if source_address else None
        # The browser: pages and redirects, with the cookies of its session.
        self.session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # the default jar drops cookies of IP hosts
            connector=aiohttp.TCPConnector(limit=1, local_addr=local_addr),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        )
        # The MCP client: registration and token requests, which carry no cookie.
        self.client_session = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(),
            connector=aiohttp.TCPConnector(limit=1, local_addr=local_addr),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        )

    async def close(self) -> None:
        await self.session.close()
        await self.client_session.close()

    def _url(self, path: str) -> str:
        return check_loopback(urllib.parse.urljoin(self.base_url + "/", path))

    async def register(self) -> None:
        """Register a public client with dynamic client registration (RFC 7591)."""
        if self.endpoints.register is None:
            self.client_id = "bench-client"
            return
        body = {
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "client_name": "frontauth benchmark",
            **self.endpoints.register_extra,
        }
        async with self.client_session.post(self._url(self.endpoints.register), json=body) as response:
            text = await response.text()
            if response.status not in (200, 201):
                raise FlowError("register", f"HTTP {response.status}: {text[:300]}")
            self.client_id = (await response.json(content_type=None))["client_id"]

    def _authorize_params(self, challenge: str, state: str) -> dict[str, str]:
        return {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": REDIRECT_URI,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "scope": "mcp",
            "resource": self.resource,
        }

    def _code_from(self, location: str, state: str) -> str:
        if not location.startswith(REDIRECT_URI):
            raise FlowError("authorize", f"redirected to {location[:120]!r}, not to the client")
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
        if "code" not in query:
            raise FlowError("authorize", f"error {query.get('error')!r}: {query.get('error_description', '')[:200]}")
        if query.get("state") != state:
            raise FlowError("authorize", "state was not echoed")
        return query["code"]

    async def authorize_code(self) -> tuple[str, str]:
        """Get a code in the steady state: one request, whose response redirects to the client.

        Returns:
            The code and the PKCE code_verifier that redeems it.
        """
        assert self.endpoints.authorize is not None
        verifier, challenge = new_pkce()
        state = secrets.token_urlsafe(12)
        url = self._url(self.endpoints.authorize)
        async with self.session.get(url, params=self._authorize_params(challenge, state), allow_redirects=False) as response:
            await response.read()
            if response.status not in (302, 303):
                raise FlowError("authorize", f"HTTP {response.status} instead of a redirect")
            location = response.headers.get("Location", "")
        return self._code_from(location, state), verifier

    async def first_code(self) -> tuple[str, str]:
        """Get a code through the sign-in and consent steps, submitting every form the server shows."""
        assert self.endpoints.authorize is not None
        verifier, challenge = new_pkce()
        state = secrets.token_urlsafe(12)
        url = self._url(self.endpoints.authorize) + "?" + urllib.parse.urlencode(self._authorize_params(challenge, state))
        method, form = "GET", None
        for _ in range(MAX_SETUP_HOPS):
            async with self.session.request(method, url, data=form, allow_redirects=False) as response:
                page = await response.text()
                status = response.status
                location = response.headers.get("Location", "")
            if status in (301, 302, 303, 307):
                if location.startswith(REDIRECT_URI):
                    return self._code_from(location, state), verifier
                url, method, form = self._url(location), "GET", None
            elif status == 200 and "<form" in page:
                url, form = self._fill_form(url, page)
                method = "POST"
            else:
                raise FlowError("sign-in", f"HTTP {status} at {urllib.parse.urlsplit(url).path}: {page[:200]!r}")
        raise FlowError("sign-in", f"no code after {MAX_SETUP_HOPS} steps")

    def _fill_form(self, page_url: str, page: str) -> tuple[str, dict[str, str]]:
        reader = _FormReader()
        reader.feed(page)
        fields = dict(reader.fields)
        if "username" in fields:
            fields["username"] = self.user
        if "decision" in reader.buttons:
            fields["decision"] = "approve"
        return check_loopback(urllib.parse.urljoin(page_url, reader.action or "")), fields

    async def _token_request(self, form: dict[str, str], step: str) -> dict[str, typing.Any]:
        async with self.client_session.post(self._url(self.endpoints.token), data=form) as response:
            body = await response.read()
            if response.status != 200:
                raise FlowError(step, f"HTTP {response.status}: {body[:200]!r}")
        try:
            tokens = json.loads(body)
        except ValueError:
            raise FlowError(step, "the token response is not JSON") from None
        if not tokens.get("access_token") or not tokens.get("refresh_token"):
            raise FlowError(step, f"no access_token or refresh_token in {sorted(tokens)}")
        return typing.cast(dict[str, typing.Any], tokens)

    async def exchange(self, code: str, verifier: str) -> dict[str, typing.Any]:
        """Redeem a code at the token endpoint (RFC 6749 §4.1.3); return the token response."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            "client_id": self.client_id,
            "resource": self.resource,
        }
        return await self._token_request(form, "token")

    async def refresh(self, refresh_token: str) -> dict[str, typing.Any]:
        """Use a refresh token (RFC 6749 §6); return the token response with its successor."""
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": self.client_id,
            "resource": self.resource,
        }
        return await self._token_request(form, "refresh")

    async def sign_in(self) -> dict[str, typing.Any]:
        """Register, sign in, consent and redeem the first code; return its token response."""
        await self.register()
        if self.endpoints.authorize is None:
            # A server with only a token endpoint takes any refresh token.
            return {"access_token": "", "refresh_token": secrets.token_urlsafe(32)}
        code, verifier = await self.first_code()
        return await self.exchange(code, verifier)

    async def new_refresh_token(self) -> str:
        """Return a fresh refresh token through one steady-state flow (after a failed refresh)."""
        if self.endpoints.authorize is None:
            return secrets.token_urlsafe(32)
        code, verifier = await self.authorize_code()
        return str((await self.exchange(code, verifier))["refresh_token"])
