"""Starting real processes for tests: frontauth servers on free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import typing
import urllib.error
import urllib.request

import attrs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 15.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until url returns 200, failing early if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with code {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@attrs.define
class ServerProcess:
    """A `python -m frontauth serve` subprocess; its log goes to log_path."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_frontauth(
    workdir: str,
    config_file: str | None = None,
    env: dict[str, str] | None = None,
    port: int | None = None,
    args: typing.Sequence[str] = (),
) -> ServerProcess:
    """Start frontauth in workdir and wait for /healthz."""
    port = port or free_port()
    log_path = os.path.join(workdir, f"frontauth-{port}.log")
    command = [sys.executable, "-m", "frontauth", "serve", "--port", str(port), *args]
    if config_file:
        command += ["--config", config_file]
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("FRONTAUTH_", "JWT_", "REDIS_", "MACHINE_ID"))}
    environment.update(env or {})
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, cwd=workdir, env=environment, stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(port=port, process=process, log_path=log_path)
    try:
        wait_http(f"{server.url}/healthz", process=process)
    except Exception:
        server.stop()
        raise RuntimeError(f"frontauth did not start; its log:\n{server.log()}") from None
    return server


def run_frontauth(workdir: str, *args: str, env: dict[str, str] | None = None, stdin: str | None = None,
                  timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a frontauth command to completion and capture its output."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("FRONTAUTH_", "JWT_", "REDIS_", "MACHINE_ID"))}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "frontauth", *args], cwd=workdir, env=environment, input=stdin,
        capture_output=True, text=True, timeout=timeout,
    )
