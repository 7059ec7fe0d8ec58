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
import typing

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
# A field whose name ends in one of these is sensitive too, for example
# session_token, redis_password or server_secret.
SENSITIVE_SUFFIXES = ("token", "secret", "password", "verifier")

_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE)
# HTTP header lines whose whole value is a credential.
_HEADER = re.compile(r"(?P<name>\b(?:proxy-)?authorization|\b(?:set-)?cookie)(?P<sep>\s*:\s*)[^\r\n]+", re.IGNORECASE)


class Redactor:
    """Replaces the values of sensitive fields in free text with ``[redacted]``.

    It covers ``name=value`` in query strings, form bodies and key=value log
    text, ``"name": "value"`` in JSON and ``'name': 'value'`` in Python reprs,
    ``Authorization`` and ``Cookie`` header lines, and bearer or basic
    credentials anywhere.

    Args:
        extra_fields: more field names, matched exactly and ignoring case
            (``logging.redact``, cookie names).
    """

    def __init__(self, extra_fields: typing.Iterable[str] = ()) -> None:
        exact = sorted({*SENSITIVE_FIELDS, *extra_fields}, key=len, reverse=True)
        names = (
            r"(?<![\w.-])(?P<name>(?:"
            + "|".join(re.escape(name) for name in exact)
            + r")|[\w.-]*?(?:"
            + "|".join(SENSITIVE_SUFFIXES)
            + r"))"
        )
        self._quoted = re.compile(
            r"(?P<quote>[\"'])" + names + r"(?P=quote)(?P<sep>\s*:\s*)(?P=quote)(?:\\.|(?!(?P=quote)).)*(?P=quote)",
            re.IGNORECASE,
        )
        # A value ends at '&' (next parameter), '#' (fragment), whitespace or a quote.
        self._pair = re.compile(names + r"(?P<sep>=)(?P<value>[^&#\s\"']+)", re.IGNORECASE)

    def __call__(self, text: str) -> str:
        text = self._quoted.sub(
            lambda m: f"{m['quote']}{m['name']}{m['quote']}{m['sep']}{m['quote']}[redacted]{m['quote']}", text
        )
        text = _HEADER.sub(lambda m: f"{m['name']}{m['sep']}[redacted]", text)
        text = self._pair.sub(lambda m: f"{m['name']}=[redacted]", text)
        return _BEARER.sub(lambda m: f"{m.group(1)} [redacted]", text)


redact = Redactor()


class RedactingFilter(logging.Filter):
    """Renders each record's message once, redacted, so handlers never see raw values."""

    def __init__(self, redactor: Redactor = redact) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        # SECURITY: escape line breaks so that a path or parameter cannot
        # forge a log line (CWE-117). Tracebacks travel in exc_info, not here.
        cleaned = self.redactor(message).replace("\r", "\\r").replace("\n", "\\n")
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        return True


class TextFormatter(logging.Formatter):
    """One line per record for terminals, tracebacks redacted too."""

    def __init__(self, redactor: Redactor = redact) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def __init__(self, redactor: Redactor = redact) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.redactor(self.formatException(record.exc_info))
        return json.dumps(entry)


def configure(level: str = "INFO", fmt: str = "text", redact_fields: typing.Iterable[str] = ()) -> None:
    """Send every record to stderr, redacted.

    Args:
        level: DEBUG, INFO, WARNING or ERROR.
        fmt: ``text`` or ``json``.
        redact_fields: field names to redact besides the built-in ones.
    """
    redactor = Redactor(redact_fields)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter(redactor))
    handler.setFormatter(JsonFormatter(redactor) if fmt == "json" else TextFormatter(redactor))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
