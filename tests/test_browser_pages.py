"""The sign-in, consent and error pages in headless Chromium, used as a person would.

The tests start ``python -m frontauth serve`` with a users file, register a
client whose redirect_uri points at a small aiohttp server of their own on
loopback (the "client", which records the query it receives), and drive
Debian's Chromium through Playwright. Every page a test visits is saved as a
screenshot under tests/artifacts/<test name>/.

Chromium comes from the distribution (``/usr/bin/chromium``), not from
Playwright's own download. Without it, or without the playwright package, the
tests are skipped, except under ``CI=true``, where they fail. axe-core comes
from npm into tests/.cache (``.ci/run`` installs it); without it only the
accessibility test is skipped or failed the same way.

Set ``UPDATE_SCREENSHOTS=1`` to rewrite the screenshots under docs/screenshots.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import pathlib
import re
import secrets
import shutil
import threading
import typing
import urllib.parse
import urllib.request

import pytest
from aiohttp import web

from frontauth.users import add_user
from tests.processes import ServerProcess, free_port, start_frontauth

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# The networking flags stop Chromium's background connections to Google's services, which a closed network rejects.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ROOT = pathlib.Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
AXE = ROOT / "tests" / ".cache" / "node_modules" / "axe-core" / "axe.min.js"
USER, PASSWORD = "alice", "correct horse battery"
CONFIG = """
[scopes]
mcp = "Use the MCP server's tools, resources and prompts in your name"
"files.read" = "Read the files you share with the MCP server"

[login]
users_file = "users.toml"

[cimd]
allow_http_loopback = true

[pages]
product_name = "Example Co."
logo_file = "logo.svg"
accent_color = "#0b6e4f"
"""
ACCENT_RGB = "rgb(11, 110, 79)"
LOGO = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="7" fill="#0b6e4f"/>'
    '<path d="M9 22V10h13v3h-9v2h8v3h-8v4z" fill="#fff"/></svg>'
)
pytestmark = pytest.mark.browser

EXPIRED_LINK = "The authorization request expired or was already completed. Return to the application and start again."

try:
    from playwright.sync_api import Browser, Page, Response, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None


def _missing(requirement: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{requirement} is required under CI=true (.ci/run installs it)")
    pytest.skip(f"{requirement} is not installed")


# --- the client's redirect server -------------------------------------------------------


class ClientServer:
    """A loopback aiohttp server in its own thread: the MCP client's redirect_uri and a framing page."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[dict[str, str]] = []
        self.framed_url = ""
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def redirect_uri(self) -> str:
        return f"{self.url}/callback"

    async def _callback(self, request: web.Request) -> web.Response:
        self.received.append(dict(request.query))
        return web.Response(text="<!doctype html><title>Client</title><p>The client received the response.</p>",
                            content_type="text/html")

    def document_url(self, name: str) -> str:
        """A client_id naming a client ID metadata document that this server serves."""
        return f"{self.url}/clients/{name}.json"

    async def _document(self, request: web.Request) -> web.Response:
        document = {
            "client_id": f"{self.url}{request.path}",
            "client_name": "Example Desktop Assistant",
            "redirect_uris": [self.redirect_uri],
            "token_endpoint_auth_method": "none",
        }
        return web.json_response(document, headers={"Cache-Control": "max-age=300"})

    async def _frame(self, request: web.Request) -> web.Response:
        # A page of another origin that tries to show frontauth's sign-in page inside itself.
        body = (f'<!doctype html><title>Framing page</title><p>Embedded:</p>'
                f'<iframe id="embedded" src="{self.framed_url}" width="600" height="400"></iframe>')
        return web.Response(text=body, content_type="text/html")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/callback", self._callback)
        app.router.add_get("/frame", self._frame)
        app.router.add_get("/clients/{name}.json", self._document)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> typing.Iterator[Browser]:
    if sync_playwright is None:
        _missing("the playwright package (pip install -e '.[test]')")
    if not os.path.exists(CHROMIUM):
        _missing(f"Chromium at {CHROMIUM} (Debian package chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def client_server() -> typing.Iterator[ClientServer]:
    server = ClientServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def frontauth(tmp_path_factory: pytest.TempPathFactory) -> typing.Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("browser-pages")
    add_user(str(workdir / "users.toml"), USER, PASSWORD)
    (workdir / "frontauth.toml").write_text(CONFIG)
    (workdir / "logo.svg").write_text(LOGO)
    server = start_frontauth(str(workdir), str(workdir / "frontauth.toml"))
    yield server
    server.stop()


@pytest.fixture
def client_id(frontauth: ServerProcess, client_server: ClientServer) -> str:
    """A new client for each test, so remembered consent never leaks between tests."""
    body = json.dumps({
        "client_name": "Example Desktop Assistant",
        "redirect_uris": [client_server.redirect_uri],
        "token_endpoint_auth_method": "none",
    }).encode()
    request = urllib.request.Request(f"{frontauth.url}/oauth/register", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.load(response)["client_id"])


class Visit:
    """One browser tab: saves a screenshot of each page and notes CSP reports and page responses."""

    def __init__(self, page: Page, folder: pathlib.Path) -> None:
        self.page = page
        self.folder = folder
        self.shots = 0
        self.csp_reports: list[str] = []
        self.responses: list[Response] = []
        page.on("console", self._console)
        page.on("response", self._response)

    def _console(self, message: typing.Any) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.csp_reports.append(message.text)

    def _response(self, response: Response) -> None:
        self.responses.append(response)

    def shot(self, label: str) -> pathlib.Path:
        self.shots += 1
        path = self.folder / f"{self.shots:02d}-{label}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def pages(self, path: str) -> list[Response]:
        return [r for r in self.responses if urllib.parse.urlsplit(r.url).path == path]


@pytest.fixture
def visit(chromium: Browser, request: pytest.FixtureRequest) -> typing.Iterator[Visit]:
    """A fresh browser context (no cookies) at desktop width."""
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    yield Visit(page, folder)
    context.close()


# --- helpers -----------------------------------------------------------------------------


def new_pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_url(frontauth: ServerProcess, client_server: ClientServer, client_id: str,
                  scope: str = "mcp") -> tuple[str, str, str]:
    """Return the authorization URL, its state and the PKCE verifier."""
    verifier, challenge = new_pkce()
    state = "state-" + secrets.token_hex(6)
    query = urllib.parse.urlencode({
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": client_server.redirect_uri,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "scope": scope,
    })
    return f"{frontauth.url}/oauth/authorize?{query}", state, verifier


def sign_in(visit: Visit, password: str = PASSWORD) -> None:
    """Type the user name and password and press Enter, as a person would."""
    page = visit.page
    assert page.locator("h1").inner_text() == "Sign in"
    visit.shot("sign-in")
    page.get_by_label("User name").fill(USER)
    page.get_by_label("Password").fill(password)
    page.get_by_label("Password").press("Enter")
    page.wait_for_load_state()


def received_after(client_server: ClientServer, page: Page) -> dict[str, str]:
    """The query the client's redirect server received last, once the browser is on it."""
    page.wait_for_url(f"{client_server.redirect_uri}?*")
    assert client_server.received, "the client's redirect server received nothing"
    return client_server.received[-1]


def exchange(frontauth: ServerProcess, client_server: ClientServer, client_id: str, code: str,
             verifier: str) -> dict[str, typing.Any]:
    form = urllib.parse.urlencode({
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": client_server.redirect_uri,
        "code_verifier": verifier,
        "client_id": client_id,
    }).encode()
    with urllib.request.urlopen(f"{frontauth.url}/oauth/token", data=form, timeout=10) as response:
        return typing.cast(dict[str, typing.Any], json.load(response))


def check_page_headers(response: Response) -> None:
    headers = response.headers
    assert headers["cache-control"] == "no-store", response.url
    assert headers["x-frame-options"] == "DENY", response.url
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp, csp
    assert "default-src 'none'" in csp, csp
    assert "unsafe-inline" not in csp, csp


def consent_scopes(page: Page) -> dict[str, bool]:
    """Scope name -> whether the consent page marks it new."""
    items = page.locator("ul.scopes li")
    return {
        items.nth(i).locator("code").inner_text(): items.nth(i).locator(".new").count() == 1
        for i in range(items.count())
    }


# --- flows ---------------------------------------------------------------------------------


def test_sign_in_and_approve_gives_code(visit, frontauth, client_server, client_id):
    url, state, verifier = authorize_url(frontauth, client_server, client_id)
    visit.page.goto(url)
    sign_in(visit)

    page = visit.page
    assert page.locator("h1").inner_text() == "Allow access?"
    assert page.locator(".client-name").inner_text() == "Example Desktop Assistant unverified"
    assert page.locator(".client-document").count() == 0
    assert page.locator(".local-notice .local").inner_text() == "on this device"
    assert page.locator(".facts dd").nth(1).inner_text() == f"127.0.0.1:{client_server.port}"
    assert page.locator(".facts dd").nth(0).inner_text() == f"{frontauth.url}/mcp"
    assert consent_scopes(page) == {"mcp": False}
    assert page.locator(".scope-description").inner_text() == "Use the MCP server's tools, resources and prompts in your name"
    visit.shot("consent")
    page.get_by_role("button", name="Approve").click()

    query = received_after(client_server, page)
    visit.shot("client")
    assert query["state"] == state
    assert query["iss"] == frontauth.url
    tokens = exchange(frontauth, client_server, client_id, query["code"], verifier)
    assert tokens["token_type"] == "Bearer"
    assert tokens["scope"] == "mcp"
    for path in ("/oauth/login", "/oauth/consent"):
        assert visit.pages(path), f"no page response for {path}"
        for response in visit.pages(path):
            check_page_headers(response)
    assert visit.csp_reports == []


def test_session_cookie_flags(visit, frontauth, client_server, client_id):
    url, _, _ = authorize_url(frontauth, client_server, client_id)
    visit.page.goto(url)
    sign_in(visit)
    visit.shot("consent")
    cookies = {c["name"]: c for c in visit.page.context.cookies()}
    session = cookies["frontauth_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Lax"
    # The public URL is http here; Secure is set when it is https.
    assert session["secure"] is False
    assert session["path"] == "/oauth"


def test_deny_returns_access_denied(visit, frontauth, client_server, client_id):
    url, state, _ = authorize_url(frontauth, client_server, client_id)
    visit.page.goto(url)
    sign_in(visit)
    visit.shot("consent")
    visit.page.get_by_role("button", name="Deny").click()

    query = received_after(client_server, visit.page)
    visit.shot("client")
    assert query["error"] == "access_denied"
    assert query["state"] == state
    assert query["iss"] == frontauth.url
    assert "code" not in query


def test_remembered_consent_skips_page(visit, frontauth, client_server, client_id):
    url, _, _ = authorize_url(frontauth, client_server, client_id)
    visit.page.goto(url)
    sign_in(visit)
    visit.shot("consent")
    visit.page.get_by_role("button", name="Approve").click()
    received_after(client_server, visit.page)
    consent_pages = len(visit.pages("/oauth/consent"))

    again, state, _ = authorize_url(frontauth, client_server, client_id)
    visit.page.goto(again)
    query = received_after(client_server, visit.page)
    visit.shot("client")
    assert query["state"] == state
    assert "code" in query
    assert len(visit.pages("/oauth/consent")) == consent_pages


def test_new_scope_prompts_again(visit, frontauth, client_server, client_id):
    url, _, _ = authorize_url(frontauth, client_server, client_id, scope="mcp")
    visit.page.goto(url)
    sign_in(visit)
    visit.shot("consent")
    visit.page.get_by_role("button", name="Approve").click()
    received_after(client_server, visit.page)

    wider, state, _ = authorize_url(frontauth, client_server, client_id, scope="mcp files.read")
    visit.page.goto(wider)
    page = visit.page
    assert page.locator("h1").inner_text() == "Allow access?"
    assert consent_scopes(page) == {"mcp": False, "files.read": True}
    assert page.locator("li.is-new .scope-description").inner_text() == "Read the files you share with the MCP server"
    visit.shot("consent-new-scope")
    page.get_by_role("button", name="Approve").click()
    query = received_after(client_server, page)
    assert query["state"] == state
    assert "code" in query


def test_replayed_consent_form_rejected(visit, frontauth, client_server, client_id):
    url, _, _ = authorize_url(frontauth, client_server, client_id)
    visit.page.goto(url)
    sign_in(visit)
    page = visit.page
    visit.shot("consent")
    fields = {
        name: page.locator(f"form input[name={name}]").get_attribute("value")
        for name in ("pending", "csrf_token")
    }
    page.get_by_role("button", name="Approve").click()
    received_after(client_server, page)
    codes = len(client_server.received)

    # Back to the consent page: it is no-store, so the browser requests it from frontauth again.
    page.go_back()
    page.wait_for_load_state()
    visit.shot("after-back")
    assert page.locator("h1").inner_text() == "This sign-in link has expired"
    # The same form, sent again by this browser with its cookies.
    replay = page.request.post(f"{frontauth.url}/oauth/consent", form={**fields, "decision": "approve"},
                               max_redirects=0)
    assert replay.status == 400
    assert EXPIRED_LINK in replay.text()
    assert len(client_server.received) == codes


def test_page_in_frame_blocked(visit, frontauth, client_server, client_id):
    url, _, _ = authorize_url(frontauth, client_server, client_id)
    visit.page.goto(url)
    login_url = visit.page.url
    assert urllib.parse.urlsplit(login_url).path == "/oauth/login"
    visit.shot("sign-in")

    client_server.framed_url = login_url
    visit.page.goto(f"{client_server.url}/frame")
    # Chromium reports the blocked frame on the console once the frame's response arrives.
    for _ in range(50):
        if any("frame-ancestors" in report for report in visit.csp_reports):
            break
        visit.page.wait_for_timeout(100)
    visit.shot("framing-page")
    assert any("frame-ancestors 'none'" in report for report in visit.csp_reports), visit.csp_reports
    framed = [f for f in visit.page.frames if f != visit.page.main_frame]
    assert len(framed) == 1
    assert framed[0].locator("#username").count() == 0
    assert visit.page.frame_locator("#embedded").locator("form").count() == 0


def test_forged_csrf_token_rejected(visit, frontauth, client_server, client_id):
    received = len(client_server.received)
    url, _, _ = authorize_url(frontauth, client_server, client_id)
    visit.page.goto(url)
    sign_in(visit)
    page = visit.page
    visit.shot("consent")
    # evaluate() runs through the DevTools protocol, so the page's CSP does not stop it.
    page.locator("form input[name=csrf_token]").evaluate("input => { input.value = 'forged' }")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_load_state()
    visit.shot("error")
    assert page.locator("h1").inner_text() == "This form has expired"
    assert page.url == f"{frontauth.url}/oauth/consent"
    assert len(client_server.received) == received


def test_keyboard_only_sign_in(visit, frontauth, client_server, client_id):
    url, state, _ = authorize_url(frontauth, client_server, client_id)
    page = visit.page
    page.goto(url)
    visit.shot("sign-in")

    def focused() -> str:
        return str(page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()"))

    assert focused() == "username"
    page.keyboard.type(USER)
    page.keyboard.press("Tab")
    assert focused() == "password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    assert focused() == "Sign in"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/oauth/consent\?.*"))
    visit.shot("consent")

    page.keyboard.press("Tab")
    assert focused() == "Deny"
    page.keyboard.press("Tab")
    assert focused() == "Approve"
    page.keyboard.press("Enter")
    query = received_after(client_server, page)
    assert query["state"] == state
    assert "code" in query


def test_failed_sign_in_reveals_nothing(visit, frontauth, client_server, client_id):
    url, _, _ = authorize_url(frontauth, client_server, client_id)
    page = visit.page
    page.goto(url)
    messages = []
    for name in (USER, "nobody-by-this-name"):
        page.get_by_label("User name").fill(name)
        page.get_by_label("Password").fill("wrong password")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state()
        visit.shot(f"failed-{'known' if name == USER else 'unknown'}")
        messages.append(page.get_by_role("alert").inner_text())
        assert page.get_by_label("User name").get_attribute("aria-invalid") == "true"
    assert messages == ["The user name or password is incorrect."] * 2


def test_document_client_host_and_local_mark(visit, frontauth, client_server):
    """A client_id that is a metadata document URL: the page names the document's host and marks the client local."""
    client_id = client_server.document_url(secrets.token_hex(4))
    url, state, verifier = authorize_url(frontauth, client_server, client_id)
    visit.page.goto(url)
    sign_in(visit)
    page = visit.page
    assert page.locator("h1").inner_text() == "Allow access?"
    assert page.locator(".client-name").inner_text() == "Example Desktop Assistant unverified"
    assert page.locator(".client-document").inner_text() == f"Described by a document on 127.0.0.1:{client_server.port}"
    notice = page.locator(".local-notice")
    assert notice.is_visible()
    assert notice.locator(".local").inner_text() == "on this device"
    assert f"at 127.0.0.1:{client_server.port}, not at a web site" in notice.inner_text()
    visit.shot("consent")
    assert axe_violations(page) == []
    check_page_headers(visit.pages("/oauth/consent")[-1])

    page.get_by_role("button", name="Approve").click()
    query = received_after(client_server, page)
    assert query["state"] == state
    assert exchange(frontauth, client_server, client_id, query["code"], verifier)["token_type"] == "Bearer"
    assert visit.csp_reports == []


def test_branding_from_configuration(visit, frontauth, client_server, client_id):
    url, _, _ = authorize_url(frontauth, client_server, client_id)
    page = visit.page
    page.goto(url)
    visit.shot("sign-in")
    assert page.title() == "Sign in · Example Co."
    assert page.locator(".brand-name").inner_text() == "Example Co."
    logo_width = page.locator("img.brand-logo").evaluate("img => img.complete && img.naturalWidth")
    assert logo_width > 0
    button = page.get_by_role("button", name="Sign in")
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") == ACCENT_RGB
    assert visit.csp_reports == []


# --- layout and accessibility ----------------------------------------------------------------


def open_pages(visit: Visit, frontauth: ServerProcess, client_server: ClientServer,
               client_id: str) -> typing.Iterator[str]:
    """Visit the sign-in, consent and error pages in turn, yielding each page's name."""
    url, _, _ = authorize_url(frontauth, client_server, client_id, scope="mcp files.read")
    visit.page.goto(url)
    yield "sign-in"
    sign_in(visit)
    yield "consent"
    visit.page.goto(f"{frontauth.url}/oauth/consent?pending=expired-or-unknown")
    yield "error"


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (640, 400), (390, 844), (320, 640)],
                         ids=["desktop", "desktop-200pct-zoom", "phone", "phone-narrow"])
def test_pages_fit_width(chromium, frontauth, client_server, client_id, width, height, request):
    """No page scrolls sideways; 640 px wide is a 1280 px window at 200% zoom."""
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    context = chromium.new_context(viewport={"width": width, "height": height})
    try:
        visit = Visit(context.new_page(), folder)
        for name in open_pages(visit, frontauth, client_server, client_id):
            path = visit.shot(name)
            overflow = visit.page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{name} page is {overflow} px too wide at {width} px"
            for button in visit.page.get_by_role("button").all():
                box = button.bounding_box()
                assert box is not None, name
                assert box["x"] >= 0, name
                assert box["x"] + box["width"] <= width, name
            if os.environ.get("UPDATE_SCREENSHOTS") == "1" and width in (1280, 390):
                DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                kind = "desktop" if width == 1280 else "phone"
                shutil.copyfile(path, DOCS_SCREENSHOTS / f"{name}-{kind}.png")
        assert visit.csp_reports == []
    finally:
        context.close()


def axe_violations(page: Page) -> list[str]:
    """Run axe-core on the page; return its serious and critical violations."""
    if not AXE.exists():
        _missing("axe-core (npm install --prefix tests/.cache axe-core)")
    # evaluate() runs through the DevTools protocol, outside the page's CSP.
    page.evaluate(AXE.read_text())
    report = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']} ({v['impact']}): {v['help']}" for v in report["violations"] if v["impact"] in ("serious", "critical")]


def test_pages_pass_axe(visit, frontauth, client_server, client_id):
    results = {}
    for name in open_pages(visit, frontauth, client_server, client_id):
        visit.shot(name)
        check_page_headers(visit.pages(urllib.parse.urlsplit(visit.page.url).path)[-1])
        results[name] = axe_violations(visit.page)
    assert results == {"sign-in": [], "consent": [], "error": []}
    assert visit.csp_reports == []
