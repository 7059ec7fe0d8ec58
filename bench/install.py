"""Install the peer servers into bench/.cache, once, with the registries' own clients.

node-oidc-provider comes from the npm registry into ``.cache/node``, FastMCP
from PyPI into its own virtual environment ``.cache/fastmcp-venv``. Nothing
installed here is committed. An install that fails raises
:class:`PeerUnavailable` with the installer's last lines, and the benchmark
reports that peer as not measured.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
CACHE_DIR = os.path.join(BENCH_DIR, ".cache")
PEERS_DIR = os.path.join(BENCH_DIR, "peers")

# Major versions the peer set-up is written for; the exact versions installed
# are printed with the results.
OIDC_PROVIDER_SPEC = "oidc-provider@^9"
FASTMCP_SPECS = ("fastmcp>=4,<5", "uvicorn", "uvloop", "httptools")
INSTALL_TIMEOUT = 600


class PeerUnavailable(RuntimeError):
    """A peer could not be installed or started here; the message says why."""


def _run(argv: list[str], cwd: str | None = None) -> None:
    try:
        completed = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerUnavailable(f"{' '.join(argv[:3])} failed: {exc}") from None
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr).strip().splitlines()[-15:]
        raise PeerUnavailable(f"{' '.join(argv[:3])} exited with {completed.returncode}:\n" + "\n".join(output))


def _marker_matches(path: str, spec: str) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip() == spec
    except OSError:
        return False


def _write_marker(path: str, spec: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(spec + "\n")


def node_dir() -> str:
    return os.path.join(CACHE_DIR, "node")


def ensure_oidc_provider() -> str:
    """Install oidc-provider if needed; return the path of the server script next to its node_modules."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise PeerUnavailable("node and npm are not installed, so node-oidc-provider cannot run")
    target = node_dir()
    os.makedirs(target, exist_ok=True)
    marker = os.path.join(target, ".installed")
    if not _marker_matches(marker, OIDC_PROVIDER_SPEC):
        package_json = os.path.join(target, "package.json")
        if not os.path.exists(package_json):
            with open(package_json, "w", encoding="utf-8") as fh:
                json.dump({"name": "frontauth-bench-peers", "private": True, "type": "module"}, fh)
        _run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", OIDC_PROVIDER_SPEC], cwd=target)
        _write_marker(marker, OIDC_PROVIDER_SPEC)
    # ESM resolves "oidc-provider" from the script's own folder, so the script
    # runs from a copy placed beside node_modules.
    script = os.path.join(target, "oidc_provider.mjs")
    shutil.copyfile(os.path.join(PEERS_DIR, "oidc_provider.mjs"), script)
    return script


def fastmcp_python() -> str:
    return os.path.join(CACHE_DIR, "fastmcp-venv", "bin", "python")


def ensure_fastmcp() -> str:
    """Install FastMCP, uvicorn and uvloop into their own venv if needed; return its python."""
    venv = os.path.join(CACHE_DIR, "fastmcp-venv")
    python = fastmcp_python()
    marker = os.path.join(venv, ".installed")
    spec = " ".join(FASTMCP_SPECS)
    if not (_marker_matches(marker, spec) and os.path.exists(python)):
        _run([sys.executable, "-m", "venv", "--clear", venv])
        _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *FASTMCP_SPECS])
        _write_marker(marker, spec)
    return python


def node_package_version(name: str) -> str:
    try:
        with open(os.path.join(node_dir(), "node_modules", name, "package.json"), encoding="utf-8") as fh:
            return str(json.load(fh)["version"])
    except (OSError, ValueError, KeyError):
        return "not installed"


def python_package_versions(python: str, names: list[str]) -> dict[str, str]:
    """Return the installed versions of packages in another interpreter's environment."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: out[n] = 'not installed'\n"
        "out['python'] = sys.version.split()[0]\n"
        "print(json.dumps(out))\n"
    )
    try:
        completed = subprocess.run([python, "-c", code, *names], capture_output=True, text=True, timeout=60, check=True)
        versions = json.loads(completed.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return {name: "unknown" for name in names}
    return {str(name): str(version) for name, version in versions.items()}
