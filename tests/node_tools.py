"""Node.js and npm packages for the tests, installed on first use into tests/.cache (gitignored).

``npm_package`` installs one exact package spec with npm into its own folder
under tests/.cache and records the spec in a marker file, so later runs
reuse it. ``node_binary`` returns a Node.js of at least a given major version.
That is the ``node`` on PATH when it is new enough, otherwise the official
build from nodejs.org that the npm package ``node-<os>-<cpu>`` contains (the
npm package ``node`` installs the same one). npm checks it against the
registry's integrity hash, as it does every package.

When npm, the network or the platform is missing, the tests that need them
are skipped, except under ``CI=true``, where they fail: ``.ci/run`` installs npm.
"""

from __future__ import annotations

import os
import pathlib
import platform
import shutil
import subprocess
import sys
import typing

import pytest

CACHE = pathlib.Path(__file__).resolve().parent / ".cache"
NPM_TIMEOUT = 300
# The newest Node 22 release on npm when this was written.
# Node 22 added fs.globSync, which the MCP conformance suite imports.
NODE_VERSIONS = {22: "22.23.5"}
NODE_OS = {"linux": "linux", "darwin": "darwin"}
NODE_CPU = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}


def missing(requirement: str) -> typing.NoReturn:
    """Skip the test, or fail it under CI=true, where everything it needs must be installed."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{requirement} is required under CI=true (.ci/run installs npm; the tests install the rest)")
    pytest.skip(f"{requirement} is not available")


def npm_package(folder: str, spec: str) -> pathlib.Path:
    """Install *spec* (``name@version``) into tests/.cache/<folder> unless it is there, and return that folder."""
    target = CACHE / folder
    marker = target / ".installed"
    if marker.exists() and marker.read_text() == spec:
        return target
    if shutil.which("npm") is None:
        missing(f"npm, to install {spec}")
    target.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["npm", "install", "--prefix", str(target), "--no-audit", "--no-fund", "--loglevel=error", spec],
            check=True, capture_output=True, text=True, timeout=NPM_TIMEOUT,
        )
    except subprocess.CalledProcessError as exc:
        missing(f"{spec} from npm (npm install failed: {exc.stderr.strip()[-500:]})")
    except subprocess.TimeoutExpired:
        missing(f"{spec} from npm (npm install took over {NPM_TIMEOUT} s)")
    marker.write_text(spec)
    return target


def node_major(node: str) -> int:
    """Return the major version of a node binary, or 0 when it does not run."""
    try:
        completed = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    version = completed.stdout.strip().lstrip("v")
    return int(version.split(".")[0]) if completed.returncode == 0 and version[:1].isdigit() else 0


def node_binary(major: int) -> str:
    """Return the path of a node of at least *major*: the one on PATH if new enough, else the official build from npm."""
    on_path = shutil.which("node")
    if on_path is not None and node_major(on_path) >= major:
        return on_path
    os_name, cpu = NODE_OS.get(sys.platform), NODE_CPU.get(platform.machine().lower())
    if os_name is None or cpu is None:
        missing(f"Node.js {major} for {sys.platform} on {platform.machine()}")
    package = f"node-{os_name}-{cpu}"
    folder = npm_package(f"node{major}", f"{package}@{NODE_VERSIONS[major]}")
    node = folder / "node_modules" / package / "bin" / "node"
    if node_major(str(node)) < major:
        missing(f"Node.js {major} ({node} does not run)")
    return str(node)
