"""The ``files`` item of ``frontauth check``: every file a setting names exists and can be read.

A missing TLS certificate or users file otherwise shows up only when
``frontauth serve`` starts. Findings name the setting and the path, never
what a file contains.
"""

from __future__ import annotations

import os
import stat
import typing
import urllib.parse

from frontauth import check, config

# Settings that name a file frontauth reads. FOLDER_SETTINGS name folders.
FILE_SETTINGS = config.FILE_SETTINGS
FOLDER_SETTINGS = ("pages.template_dir",)
_setting_value = config.setting_value

# The first 16 bytes of every SQLite 3 database file (SQLite file format, section 1.3).
SQLITE_HEADER = b"SQLite format 3\x00"


def _file_problem(path: str) -> str:
    """Return why a named file cannot be read, or '' when it can. The file is opened but never read."""
    if not os.path.exists(path):
        return "not found"
    # A FIFO or device would block or stream on open, so only regular files are opened.
    if not os.path.isfile(path):
        return "not a regular file"
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    return ""


def _folder_problem(path: str) -> str:
    if not os.path.exists(path):
        return "not found"
    if not os.path.isdir(path):
        return "not a folder"
    if not os.access(path, os.R_OK | os.X_OK):
        return "cannot be read (permission denied)"
    return ""


def check_files(settings: config.Settings) -> check.Finding:
    """Check that every file and folder the settings name exists and can be read.

    Only the setting, the path and the reason are reported, never the
    contents. A SQLite database needs a writable folder, because SQLite
    creates the file and its WAL files beside it.
    """
    named: list[tuple[str, str, typing.Callable[[str], str]]] = [
        (setting, path, _file_problem)
        for setting in FILE_SETTINGS
        if (path := _setting_value(settings, setting)) is not None
    ]
    named += [
        (setting, path, _folder_problem)
        for setting in FOLDER_SETTINGS
        if (path := _setting_value(settings, setting)) is not None
    ]
    problems: list[tuple[str, str]] = []
    for setting, path, find_problem in named:
        problem = find_problem(path)
        if problem:
            problems.append((setting, f"{setting} {path!r}: {problem}"))
    checked = [setting for setting, _, _ in named]
    if urllib.parse.urlsplit(settings.storage.url).scheme.lower() == "sqlite":
        checked.append("storage.url")
        problem = _sqlite_problem(settings.storage.url)
        if problem:
            problems.append(("storage.url", f"storage.url: {problem}"))
    if problems:
        reasons = "; ".join(reason for _, reason in problems)
        return check.Finding("files", check.FAIL, reasons, ", ".join(setting for setting, _ in problems))
    if not checked:
        return check.Finding("files", check.PASS, "no setting names a file")
    return check.Finding("files", check.PASS, f"found and readable: {', '.join(checked)}")


def _sqlite_problem(url: str) -> str:
    """Return why the SQLite database of ``url`` cannot be opened for writing, or '' when it can."""
    from frontauth.drivers import sqlite_schema
    from frontauth.storage import StorageUnavailable

    try:
        path = sqlite_schema.parse_url(url)
        sqlite_schema.check_path(path)
    except (StorageUnavailable, config.ConfigError) as exc:
        return str(exc)
    return _database_header_problem(path)


def _database_header_problem(path: str) -> str:
    """Return why an existing file is not a SQLite database, or '' when it is one, is empty or is absent.

    SQLite turns an empty file into a new database, so only a file with other
    content fails. Nothing is written.
    """
    try:
        # O_NONBLOCK: a FIFO put in place after the settings were checked must not block the audit.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return f"{path} is not a regular file"
        try:
            header = fh.read(len(SQLITE_HEADER))
        except OSError as exc:
            return f"cannot read {path}: {exc.strerror}"
    if header and header != SQLITE_HEADER:
        return f"{path} is not a SQLite database file"
    return ""
