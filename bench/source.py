"""The frontauth that the benchmark runs: the installed package, or a snapshot of one commit.

The installed package is an editable install of the working tree, so it
changes whenever someone edits a file. ``--frontauth-from REV`` measures one
commit instead: ``git archive`` extracts its package folders into bench/.cache,
``pip install --no-deps --target`` lays them out as installed, and every
frontauth process of the benchmark runs with that folder first on PYTHONPATH.
The dependencies still come from .venv.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys

import attrs

from bench.install import BENCH_DIR, CACHE_DIR

REPO_DIR = os.path.dirname(BENCH_DIR)
SNAPSHOT_PATHS = ("frontauth", "drivers", "templates", "setup.cfg", "setup.py", "README.md")


class SourceUnavailable(RuntimeError):
    """The requested frontauth revision could not be extracted or installed."""


def _git(*args: str) -> str:
    completed = subprocess.run(["git", "-C", REPO_DIR, *args], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SourceUnavailable(f"git {' '.join(args)} failed: {completed.stderr.strip()}")
    return completed.stdout.strip()


@attrs.frozen
class FrontauthSource:
    """The import location of frontauth for the benchmark's frontauth processes.

    Attributes:
        label: how the report names it.
        site_dir: folder to put first on PYTHONPATH, or None for the installed package.
    """

    label: str
    site_dir: str | None = None

    def env(self) -> dict[str, str]:
        """Return the environment for a process that imports this frontauth (and the bench package)."""
        env = dict(os.environ)
        if self.site_dir is not None:
            # The snapshot comes first, so it shadows the working tree that
            # REPO_DIR (needed for the bench package itself) also contains.
            env["PYTHONPATH"] = os.pathsep.join([self.site_dir, REPO_DIR])
        else:
            env["PYTHONPATH"] = REPO_DIR
        return env

    @functools.cached_property
    def settings_sections(self) -> frozenset[str]:
        """Return the top-level setting names that this frontauth accepts."""
        code = "import attrs, frontauth.config as c; print(' '.join(attrs.fields_dict(c.Settings)))"
        completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=self.env(),
                                   cwd=CACHE_DIR, check=False)
        if completed.returncode != 0:
            raise SourceUnavailable(f"importing frontauth failed: {completed.stderr.strip()[-500:]}")
        return frozenset(completed.stdout.split())


def installed() -> FrontauthSource:
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", "frontauth", "drivers", "templates")
    state = "with uncommitted changes" if dirty else "no uncommitted changes"
    return FrontauthSource(f"installed package, working tree at {commit} ({state})")


def snapshot(revision: str) -> FrontauthSource:
    """Extract and install one commit of frontauth into bench/.cache, once per commit."""
    if shutil.which("git") is None:
        raise SourceUnavailable("git is not installed")
    commit = _git("rev-parse", "--verify", f"{revision}^{{commit}}")
    short = commit[:10]
    root = os.path.join(CACHE_DIR, "frontauth", short)
    site_dir = os.path.join(root, "site")
    if not os.path.isdir(os.path.join(site_dir, "frontauth")):
        source_dir = os.path.join(root, "source")
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(source_dir)
        archive = subprocess.run(["git", "-C", REPO_DIR, "archive", commit, *SNAPSHOT_PATHS],
                                 capture_output=True, check=False)
        if archive.returncode != 0:
            raise SourceUnavailable(f"git archive {short} failed: {archive.stderr.decode(errors='replace').strip()}")
        subprocess.run(["tar", "-x", "-C", source_dir], input=archive.stdout, check=True)
        installed_ok = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
             "--target", site_dir, source_dir],
            capture_output=True, text=True, check=False,
        )
        if installed_ok.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise SourceUnavailable(f"pip install of commit {short} failed: {installed_ok.stderr.strip()[-500:]}")
    return FrontauthSource(f"commit {short} (snapshot, working tree not used)", site_dir)
