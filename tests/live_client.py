"""An HTTP client for a `frontauth serve` subprocess that the flow helpers in tests/oauth_flow.py accept.

Those helpers call ``get`` and ``post`` with paths, as on aiohttp's TestClient.
``LiveClient`` sends them to a base URL over a real connection. It keeps
cookies for the loopback address and can trust a test CA for HTTPS.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
import typing

import aiohttp

from tests.processes import ServerProcess, free_port


class LiveClient:
    """aiohttp ClientSession bound to one base URL, with a cookie jar that accepts IP hosts."""

    def __init__(self, base_url: str, ca_file: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.ssl: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
        # unsafe=True: the server is 127.0.0.1, and aiohttp drops cookies of IP hosts otherwise.
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    async def get(self, path: str, **kwargs: typing.Any) -> aiohttp.ClientResponse:
        response = await self.session.get(self._url(path), ssl=self.ssl, **kwargs)
        await response.read()
        return response

    async def post(self, path: str, **kwargs: typing.Any) -> aiohttp.ClientResponse:
        response = await self.session.post(self._url(path), ssl=self.ssl, **kwargs)
        await response.read()
        return response

    async def close(self) -> None:
        await self.session.close()


def wait_https(url: str, ca_file: str, process: typing.Any, timeout: float = 15.0) -> None:
    """Wait until an HTTPS URL returns 200, trusting ca_file; fail early if the process exits."""
    import urllib.error
    import urllib.request

    context = ssl.create_default_context(cafile=ca_file)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with code {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1, context=context) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def start_https_frontauth(
    workdir: str, cert: str, key: str, ca_file: str, config_file: str | None = None, env: dict[str, str] | None = None
) -> ServerProcess:
    """Start `frontauth serve --tls-cert --tls-key` in workdir and wait for /healthz over HTTPS.

    The returned ServerProcess's ``url`` is the plain-HTTP form; the server listens on
    ``https://127.0.0.1:{port}``.
    """
    port = free_port()
    log_path = os.path.join(workdir, f"frontauth-{port}.log")
    command = [sys.executable, "-m", "frontauth", "serve", "--port", str(port), "--tls-cert", cert, "--tls-key", key]
    if config_file:
        command += ["--config", config_file]
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("FRONTAUTH_", "JWT_", "REDIS_", "MACHINE_ID"))}
    environment.update(env or {})
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, cwd=workdir, env=environment, stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(port=port, process=process, log_path=log_path)
    try:
        wait_https(f"https://127.0.0.1:{port}/healthz", ca_file, process)
    except Exception:
        server.stop()
        raise RuntimeError(f"frontauth did not start over TLS; its log:\n{server.log()}") from None
    return server
