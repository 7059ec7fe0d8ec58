"""Liveness and readiness probes."""

from __future__ import annotations

from aiohttp import web

from frontauth.appkeys import SERVICES
from frontauth.metrics import request_metrics
from frontauth.storage import StorageUnavailable


async def healthz(request: web.Request) -> web.Response:
    """Return 200 while the process serves requests (liveness)."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Return 200 when the storage driver responds to a ping, else 503 (readiness)."""
    driver = request.app[SERVICES].driver
    try:
        await driver.ping()
    except StorageUnavailable as exc:
        metrics = request_metrics(request)
        if metrics is not None:
            metrics.count_storage_error(exc)
        return web.json_response({"status": "unavailable", "storage": driver.name}, status=503, headers={"Retry-After": "2"})
    return web.json_response({"status": "ok", "storage": driver.name})
