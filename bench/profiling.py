"""Sample the server with py-spy during an unmeasured window and summarise where its CPU goes.

py-spy attaches to the running server by process id (it needs ptrace, which
root has here) and samples its Python stacks without changing its code. The
summary gives, per function, the share of CPU samples in which the function is
on top of the stack (self) and anywhere on it (inclusive), and the self share
of each library area. Idle samples are not recorded, so shares are of busy time.
"""

from __future__ import annotations

import asyncio
import collections
import math
import os
import re
import shutil
import sys
import typing

import attrs

SAMPLE_RATE = 200  # samples per second
TOP = 12

# Self-time areas, matched against a frame's file path in this order.
AREAS = (
    ("frontauth", re.compile(r"(^|/)frontauth/|(^|/)drivers/")),
    ("joserfc (JOSE)", re.compile(r"/joserfc/")),
    ("cryptography", re.compile(r"/cryptography/")),
    ("aiohttp", re.compile(r"/aiohttp/|/multidict/|/yarl/")),
    ("aiohttp_jinja2 / jinja2", re.compile(r"/jinja2/|/aiohttp_jinja2/|/markupsafe/")),
    ("redis-py", re.compile(r"/redis/")),
    ("attrs", re.compile(r"/attr/|/attrs/")),
    ("json", re.compile(r"/json/")),
    ("asyncio", re.compile(r"/asyncio/")),
)

# Frames that are on the stack in every sample of the server, so their share carries no information.
ENTRY_POINTS = frozenset({"frontauth/__main__.py", "frontauth/cli.py"})

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<path>[^()]*?)(?::\d+)?\)$")


def py_spy_binary() -> str | None:
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    if os.path.exists(beside):
        return beside
    return shutil.which("py-spy")


@attrs.frozen
class Share:
    function: str
    where: str
    percent: float


@attrs.frozen
class ProfileSummary:
    samples: int
    top_self: tuple[Share, ...]
    top_inclusive: tuple[Share, ...]
    areas: tuple[tuple[str, float], ...]
    raw_path: str


REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + "/"
_STDLIB = re.compile(r"/lib/python3\.\d+/(?P<rest>.*)")


def _short_path(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    # A snapshot of one commit, installed by bench/source.py into .cache/frontauth/COMMIT/site.
    if "/.cache/frontauth/" in path and "/site/" in path:
        return path.split("/site/", 1)[1]
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    stdlib = _STDLIB.search(path)
    if stdlib is not None:
        return stdlib["rest"]
    return path.removeprefix(REPO_DIR)


def _parse_frame(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), ""
    return match["function"], _short_path(match["path"])


def _area(path: str) -> str:
    probe = "/" + path
    for name, pattern in AREAS:
        if pattern.search(probe):
            return name
    return "other (Python runtime, stdlib)"


def summarise(raw_path: str) -> ProfileSummary:
    """Summarise a py-spy ``--format raw`` file (collapsed stacks, one stack and count a line)."""
    self_counts: collections.Counter[tuple[str, str]] = collections.Counter()
    inclusive: collections.Counter[tuple[str, str]] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    total = 0
    with open(raw_path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            # The first entry names the process or thread, not a frame.
            frames = [_parse_frame(f) for f in stack.split(";") if f.strip()]
            frames = [f for f in frames if f[1]]
            if not frames:
                continue
            total += count
            leaf = frames[-1]
            self_counts[leaf] += count
            areas[_area(leaf[1])] += count
            for frame in set(frames):
                inclusive[frame] += count

    def shares(counter: collections.Counter[tuple[str, str]]) -> tuple[Share, ...]:
        return tuple(Share(function, where, 100.0 * n / total) for (function, where), n in counter.most_common(TOP))

    if total == 0:
        return ProfileSummary(0, (), (), (), raw_path)
    interesting = collections.Counter({
        frame: n for frame, n in inclusive.items()
        if (_area(frame[1]) == "frontauth" and frame[1] not in ENTRY_POINTS)
        or frame[0] in ("sign", "verify", "dumps", "loads")
    })
    return ProfileSummary(
        samples=total,
        top_self=shares(self_counts),
        top_inclusive=shares(interesting),
        areas=tuple((name, 100.0 * n / total) for name, n in areas.most_common()),
        raw_path=raw_path,
    )


class PySpyProbe:
    """Run ``py-spy record`` on the server for the length of the window."""

    name = "profile"

    def __init__(self, pid: int, seconds: float, raw_path: str) -> None:
        self.pid = pid
        self.seconds = seconds
        self.raw_path = raw_path
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        binary = py_spy_binary()
        if binary is None:
            raise RuntimeError("py-spy is not installed; run: .venv/bin/pip install py-spy")
        self.process = await asyncio.create_subprocess_exec(
            binary, "record", "--pid", str(self.pid), "--duration", str(math.ceil(self.seconds)),
            "--rate", str(SAMPLE_RATE), "--format", "raw", "--function", "--nonblocking",
            "--output", self.raw_path,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )

    async def stop(self) -> dict[str, typing.Any]:
        assert self.process is not None
        try:
            _, stderr = await asyncio.wait_for(self.process.communicate(), self.seconds + 30.0)
        except asyncio.TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise RuntimeError("py-spy did not finish in time") from None
        if self.process.returncode != 0 or not os.path.exists(self.raw_path):
            raise RuntimeError(f"py-spy failed: {stderr.decode(errors='replace')[-500:]}")
        return {"summary": summarise(self.raw_path)}
