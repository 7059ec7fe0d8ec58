"""The benchmark's worker: the browser sends its cookie to the pages, the MCP client sends none."""

from __future__ import annotations

import typing
import urllib.parse

from aiohttp import web

from bench.browser import REDIRECT_URI, Browser, Endpoints

SOURCE_ADDRESS = "127.0.0.2"


def recording_server() -> tuple[web.Application, list[tuple[str, str | None, str | None]]]:
    """Build a stub authorization server that records (path, Cookie header, client address) of each request."""
    seen: list[tuple[str, str | None, str | None]] = []

    @web.middleware
    async def record(
        request: web.Request, handler: typing.Callable[[web.Request], typing.Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        seen.append((request.path, request.headers.get("Cookie"), request.remote))
        return await handler(request)

    async def register(request: web.Request) -> web.Response:
        response = web.json_response({"client_id": "stub-client"}, status=201)
        response.set_cookie("registered", "yes")
        return response

    async def authorize(request: web.Request) -> web.Response:
        query = urllib.parse.urlencode({"code": "stub-code", "state": request.query["state"]})
        response = web.Response(status=302, headers={"Location": f"{REDIRECT_URI}?{query}"})
        response.set_cookie("session", "signed-in")
        return response

    async def token(request: web.Request) -> web.Response:
        response = web.json_response({"access_token": "stub-access", "refresh_token": "stub-refresh"})
        response.set_cookie("issued", "yes")
        return response

    app = web.Application(middlewares=[record])
    app.router.add_post("/register", register)
    app.router.add_get("/authorize", authorize)
    app.router.add_post("/token", token)
    return app, seen


async def test_client_requests_send_no_cookie(aiohttp_server) -> None:
    app, seen = recording_server()
    server = await aiohttp_server(app, host="127.0.0.1")
    base = f"http://127.0.0.1:{server.port}"
    endpoints = Endpoints(token="/token", register="/register", authorize="/authorize")
    browser = Browser(base, endpoints, base + "/mcp", "user@example.com", source_address=SOURCE_ADDRESS)
    try:
        await browser.register()
        for _ in range(2):
            code, verifier = await browser.authorize_code()
            await browser.exchange(code, verifier)
        await browser.refresh("stub-refresh")
    finally:
        await browser.close()

    assert browser.session.closed
    assert browser.client_session.closed

    cookies = {path: [cookie for p, cookie, _ in seen if p == path] for path in ("/register", "/authorize", "/token")}
    assert cookies["/register"] == [None]
    # The first authorization response sets the cookie, and the browser sends it from then on.
    assert cookies["/authorize"] == [None, "session=signed-in"]
    # The MCP client keeps none of the cookies that registration and token responses set.
    assert cookies["/token"] == [None, None, None]
    assert {address for _, _, address in seen} == {SOURCE_ADDRESS}
