"""The browser pages: template lookup, branding and the assets frontauth serves for them.

Templates come from ``pages.template_dir`` first, then from the packaged
``frontauth.templates``, so an operator can replace one page without copying
the others. Every page links only to frontauth's own URLs: the packaged
stylesheet, ``/branding/colors.css`` (the configured colours as CSS custom
properties) and ``/branding/logo``. Nothing is inline, so the page CSP needs
neither ``'unsafe-inline'`` nor a hash.
"""

from __future__ import annotations

import os
import typing
import urllib.parse

import aiohttp_jinja2
import jinja2
import yarl
from aiohttp import web

from frontauth import cimd
from frontauth.appkeys import SERVICES
from frontauth.clients import is_loopback_host
from frontauth.config import LOGO_TYPES, Settings
from frontauth.endpoints.register import is_hidden
from frontauth.responses import IMG_SRC
from frontauth.stores import ClientRecord

COLORS_PATH = "/branding/colors.css"
LOGO_PATH = "/branding/logo"
# Branding changes only on a restart; a short cache keeps a new colour visible soon after one.
BRANDING_CACHE = {"Cache-Control": "public, max-age=300"}


def template_loader(settings: Settings) -> jinja2.BaseLoader:
    """Return the loader that searches pages.template_dir before the packaged templates."""
    packaged = jinja2.PackageLoader("frontauth.templates", ".")
    if settings.pages.template_dir is None:
        return packaged
    return jinja2.ChoiceLoader([jinja2.FileSystemLoader(settings.pages.template_dir), packaged])


def colors_css(settings: Settings) -> str:
    """Return the stylesheet that sets the configured colours (validated as hex at start-up)."""
    pages = settings.pages
    return (
        ":root {\n"
        f"  --accent: {pages.accent_color};\n"
        f"  --bg: {pages.background_color};\n"
        f"  --text: {pages.text_color};\n"
        "}\n"
    )


def setup(app: web.Application, settings: Settings) -> None:
    """Install the template environment, the branding context and the branding routes."""
    branding = {
        "product_name": settings.pages.product_name,
        "logo_url": LOGO_PATH if settings.pages.logo_file else None,
        "colors_url": COLORS_PATH,
    }

    env = aiohttp_jinja2.setup(
        app,
        loader=template_loader(settings),
        autoescape=jinja2.select_autoescape(default=True),
    )
    env.globals["brand"] = branding
    css = colors_css(settings)

    async def colors(request: web.Request) -> web.Response:
        return web.Response(text=css, content_type="text/css", headers=BRANDING_CACHE)

    app.router.add_get(COLORS_PATH, colors)
    if settings.pages.logo_file:
        app.router.add_get(LOGO_PATH, _logo_handler(settings.pages.logo_file))


def _logo_handler(path: str) -> typing.Callable[[web.Request], typing.Awaitable[web.Response]]:
    # Read once at start-up: the file was checked to exist by the settings validation.
    with open(path, "rb") as fh:
        body = fh.read()
    content_type = LOGO_TYPES[os.path.splitext(path)[1].lower()]

    async def logo(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, headers=BRANDING_CACHE)

    return logo


def describe_client(request: web.Request, client: ClientRecord, configured: bool) -> dict[str, typing.Any]:
    """Return what the pages show about a client.

    Only a client from configuration counts as verified, because the
    operator wrote its name, web site and logo. Any other client (dynamically
    registered, or described by a client ID metadata document) chose its own
    name, so the page marks it unverified and shows neither its web site nor
    its logo, which could imitate another application. Only https addresses
    are shown, and the logo's origin is added to the page's img-src.

    The MCP authorization specification (2025-11-25, "Client ID Metadata
    Document Security") requires two more facts. ``document_host`` is the host
    of a client_id that is a metadata document URL, because, unlike the name,
    that host shows who publishes the client ("Display the CIMD ... client
    hostnames prominently"). ``local_only`` marks a client whose redirect URIs
    are all on loopback ("SHOULD display additional warnings for
    localhost-only redirect URIs"), because any program on the person's
    computer can listen there and present that client_id.
    """
    verified = configured
    uri = client.client_uri if verified and _is_https(client.client_uri) else None
    logo = client.logo_uri if verified and _is_https(client.logo_uri) else None
    if logo is not None:
        parts = urllib.parse.urlsplit(logo)
        request[IMG_SRC] = f"https://{parts.netloc}"
    return {
        "name": _visible(client.client_name or client.client_id),
        "verified": verified,
        "uri": uri,
        "uri_host": urllib.parse.urlsplit(uri).netloc if uri else None,
        "logo_uri": logo,
        "document_host": None if configured else _document_host(request, client.client_id),
        "local_only": _local_only(client.redirect_uris),
    }


def _visible(name: str) -> str:
    """Replace the characters registration rejects with U+FFFD, for a client stored before that rule."""
    return "".join("\ufffd" if is_hidden(character) else character for character in name)


def _document_host(request: web.Request, client_id: str) -> str | None:
    """Return the host of a metadata document client_id, with its port unless that is the default, else None.

    The host is the one aiohttp contacts: yarl's IDNA 2008 encoding, which
    stays in punycode, so a look-alike letter from another script cannot pass
    for a known host. Python's own ``idna`` codec is IDNA 2003 and maps ß to
    ss, so for ``faß.de`` it would show ``fass.de`` while the fetch goes to
    ``xn--fa-hia.de``.
    """
    if not cimd.is_document_url(client_id, request.app[SERVICES].settings):
        return None
    try:
        url = yarl.URL(client_id)
        port = url.port
    except ValueError:  # UnicodeError too
        return None
    host = url.raw_host
    if not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    return host if url.is_default_port() else f"{host}:{port}"


def _local_only(redirect_uris: typing.Sequence[str]) -> bool:
    """Return whether every redirect URI is http(s) on a loopback host (RFC 8252 §7.3)."""
    if not redirect_uris:
        return False
    for uri in redirect_uris:
        try:
            parts = urllib.parse.urlsplit(uri)
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not is_loopback_host(parts.hostname):
            return False
    return True


def _is_https(url: str | None) -> bool:
    if not url:
        return False
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.netloc) and not any(c in url for c in " \"'<>")
