"""Loggers, one per concern, and the redaction applied to every record.

frontauth.access   one line per request (method, path without query, status, time)
frontauth.oauth    protocol decisions: rejected requests, issued grants
frontauth.storage  driver connections and failures
frontauth.keys     key loading and generation
frontauth.cli      start-up and shutdown

Nothing here may print a token, code, verifier, secret, password or cookie.
The code never passes them to a logger; the filter below is the second line
of defence for values that arrive inside URLs or bodies.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

access = logging.getLogger("frontauth.access")
oauth = logging.getLogger("frontauth.oauth")
storage = logging.getLogger("frontauth.storage")
cli = logging.getLogger("frontauth.cli")

SENSITIVE_FIELDS = (
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "code",
    "code_verifier",
    "password",
    "authorization",
    "csrf_token",
    "token",
    "registration_access_token",
    "initial_access_token",
)

# name=value in query strings and form bodies, "name": "value" in JSON.
_PAIR = re.compile(
    r"(?P<name>\b(?:" + "|".join(SENSITIVE_FIELDS) + r"))(?P<sep>=|\"\s*:\s*\"|'\s*:\s*')(?P<value>[^&\s\"',;]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE)


def redact(text: str) -> str:
    """Replace the values of sensitive fields and credentials in free text."""
    text = _PAIR.sub(lambda m: f"{m.group('name')}{m.group('sep')}[redacted]", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} [redacted]", text)


class RedactingFilter(logging.Filter):
    """Renders each record's message once, redacted, so handlers never see raw values."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry)


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Send frontauth's and aiohttp's records to stderr, redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
