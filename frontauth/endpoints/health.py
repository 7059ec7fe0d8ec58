"""Liveness and readiness probes."""

from __future__ import annotations

from aiohttp import web

from frontauth.appkeys import SERVICES
from frontauth.metrics import request_metrics
from frontauth.storage import StorageUnavailable


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the storage driver answers a ping."""
    driver = request.app[SERVICES].driver
    try:
        await driver.ping()
    except StorageUnavailable as exc:
        metrics = request_metrics(request)
        if metrics is not None:
            metrics.count_storage_error(exc)
        return web.json_response({"status": "unavailable", "storage": driver.name}, status=503, headers={"Retry-After": "2"})
    return web.json_response({"status": "ok", "storage": driver.name})
