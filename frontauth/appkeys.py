"""Typed keys for the state the aiohttp application shares with its handlers."""

from __future__ import annotations

import typing

from aiohttp import web

if typing.TYPE_CHECKING:
    from frontauth.services import Services

SERVICES: web.AppKey["Services"] = web.AppKey("frontauth_services")
