"""The TLS context for serving HTTPS directly (``server.tls_cert``, ``server.tls_key``)."""

from __future__ import annotations

import os
import ssl

from frontauth.config import ConfigError, Settings


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """Load the server certificate and key into a TLS context, or return None for plain HTTP.

    The context accepts TLS 1.2 and later, with the ciphers of Python's default
    server context.

    Raises:
        ConfigError: a file cannot be read, is not PEM, or the key does not
            match the certificate.
    """
    cert = settings.server.tls_cert
    key = settings.server.tls_key
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # load_cert_chain does not say which file is missing, so each is checked first.
    for setting, path in (("server.tls_cert", cert), ("server.tls_key", key)):
        if not os.path.exists(path):
            raise ConfigError(setting, settings.source_of(setting), f"file {path!r} not found")
        if not os.path.isfile(path):
            raise ConfigError(setting, settings.source_of(setting), f"{path!r} is not a regular file")
    try:
        context.load_cert_chain(cert, key)
    # ssl.SSLError is a subclass of OSError, so it is caught first.
    except ssl.SSLError as exc:
        raise ConfigError(
            "server.tls_key",
            settings.source_of("server.tls_key"),
            f"cannot load {cert!r} with key {key!r}: {exc.reason or exc}; expected PEM files of one certificate "
            "chain and its private key",
        ) from None
    except OSError as exc:
        raise ConfigError("server.tls_cert", settings.source_of("server.tls_cert"), f"cannot read {cert!r}: {exc.strerror}") from None
    return context
