"""Versions of everything measured, and the machine it ran on."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess

from bench import install
from bench.servers import redis_version

OWN_PACKAGES = ("aiohttp", "joserfc", "cryptography", "attrs", "redis", "hiredis", "uvloop")
FASTMCP_PACKAGES = ["fastmcp", "mcp", "uvicorn", "uvloop", "httptools", "starlette"]


def _package(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _command(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return "not installed"
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = "unknown"
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            memory = f"{int(fh.readline().split()[1]) / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {"CPU": model, "cores": str(os.cpu_count()), "memory": memory,
            "kernel": platform.release(), "OS": platform.platform(terse=True)}


def collect(peers: bool) -> dict[str, dict[str, str]]:
    """Return versions grouped by what they belong to."""
    own = {"python": platform.python_version(), **{name: _package(name) for name in OWN_PACKAGES}}
    own["redis-server"] = redis_version()
    groups = {"frontauth, the load driver and the bare aiohttp peer": own}
    if peers:
        groups["node-oidc-provider"] = {
            "node": _command(["node", "--version"]),
            "oidc-provider": install.node_package_version("oidc-provider"),
            "jose": install.node_package_version("jose"),
            "koa": install.node_package_version("koa"),
        }
        if os.path.exists(install.fastmcp_python()):
            groups["FastMCP"] = install.python_package_versions(install.fastmcp_python(), FASTMCP_PACKAGES)
        else:
            groups["FastMCP"] = {"fastmcp": "not installed"}
    return groups
