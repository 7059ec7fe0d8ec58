"""Command line: ``serve``, ``keys generate``, ``users add``, ``clients hash-secret``.

``main(argv)`` returns the exit code, so tests call it directly. A bad setting
ends start-up with one line that names the setting and where it came from.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import signal
import ssl
import sys
import time
import typing

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from frontauth import config, log, tls
from frontauth import keys as signing_keys

logger = logging.getLogger("frontauth.cli")
access_logger = logging.getLogger("frontauth.access")


class UnparsableRequestFilter(logging.Filter):
    """Replace aiohttp's record of an unparsable request with one INFO line.

    aiohttp 3.14 responds to a request line or header block its parser rejects
    with 400 before any middleware runs, and logs the rejection on the
    ``aiohttp.server`` logger at ERROR with a traceback whose message quotes
    the request bytes. Any client could fill the error log that way, so the
    record is dropped and one line without those bytes is logged instead.
    Other records of that logger, such as handler failures, pass unchanged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        client = record.args[0] if isinstance(record.args, tuple) and record.args else "-"
        access_logger.info("rejected unparsable request from %s: %s (%s)", client, type(error).__name__, error.code)
        return False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="frontauth", description="OAuth 2.1 authorization server for MCP servers")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the authorization server")
    serve.add_argument("--config", help="TOML configuration file")
    serve.add_argument("--host", help="address to listen on (server.host)")
    serve.add_argument("--port", type=int, help="TCP port to listen on (server.port)")
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (logging.level)")
    serve.add_argument("--public-url", help="external URL, becomes the issuer (public_url)")
    serve.add_argument("--tls-cert", help="certificate chain (PEM) to serve HTTPS directly (server.tls_cert)")
    serve.add_argument("--tls-key", help="private key (PEM) of the certificate (server.tls_key)")

    keys = commands.add_parser("keys", help="signing key tools").add_subparsers(dest="keys_command", required=True)
    generate = keys.add_parser("generate", help="print a new private signing JWK and its public half")
    generate.add_argument("--alg", choices=signing_keys.ALGORITHMS, default="ES256", help="signature algorithm")
    generate.add_argument("--kid", help="key id (default: the RFC 7638 thumbprint)")

    users = commands.add_parser("users", help="manage the users file").add_subparsers(dest="users_command", required=True)
    add = users.add_parser("add", help="add or replace a user in a users file; the password is read from the terminal or stdin")
    add.add_argument("name", help="user name (the token subject)")
    add.add_argument("--file", default="users.toml", help="users file to write (default: users.toml)")
    add.add_argument("--email", help="e-mail address shown on the consent page")
    add.add_argument("--display-name", help="full name shown on the consent page")

    check = commands.add_parser("check", help="audit a configuration, and a running server, against the production checklist")
    from frontauth.check import add_arguments

    add_arguments(check)

    clients = commands.add_parser("clients", help="client tools").add_subparsers(dest="clients_command", required=True)
    clients.add_parser("hash-secret", help="hash a client secret read from stdin for clients[].client_secret_hash")
    return parser


def main(argv: typing.Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "keys":
        return _keys_generate(args)
    if args.command == "users":
        return _users_add(args)
    if args.command == "check":
        from frontauth.check import run

        return run(args)
    return _hash_secret()


def _keys_generate(args: argparse.Namespace) -> int:
    private: dict[str, typing.Any] = dict(signing_keys.generate(args.alg, args.kid))
    # iat dates the key, so that `frontauth check` can report when it is due for rotation.
    private["iat"] = int(time.time())
    print(json.dumps({"private": private, "public": signing_keys.public_half(private)}, indent=2))
    print(
        "\nPut the private JWK in JWT_SIGNING_KEY (or keys.sign_key) and keep it secret;"
        " keep the public half in keys.previous after the next rotation.",
        file=sys.stderr,
    )
    return 0


def _read_secret(prompt: str) -> str:
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if getpass.getpass("again: ") != first:
            raise ValueError("the two entries differ")
        return first
    return sys.stdin.readline().rstrip("\n")


def _users_add(args: argparse.Namespace) -> int:
    from frontauth.users import add_user

    try:
        password = _read_secret(f"password for {args.name}: ")
    except ValueError as exc:
        print(f"frontauth: {exc}", file=sys.stderr)
        return 2
    if len(password) < 8:
        print("frontauth: the password must have at least 8 characters", file=sys.stderr)
        return 2
    try:
        add_user(args.file, args.name, password, name=args.display_name, email=args.email)
    except (OSError, ValueError, config.ConfigError) as exc:
        print(f"frontauth: {exc}", file=sys.stderr)
        return 1
    print(f"added user {args.name} to {args.file}", file=sys.stderr)
    return 0


def _hash_secret() -> int:
    from frontauth.users import hash_password

    secret = _read_secret("client secret: ")
    if len(secret) < 16:
        print("frontauth: the client secret must have at least 16 characters", file=sys.stderr)
        return 2
    print(hash_password(secret))
    return 0


def _serve(args: argparse.Namespace) -> int:
    overrides = {
        "server.host": args.host,
        "server.port": args.port,
        "logging.level": args.log_level,
        "public_url": args.public_url,
        "server.tls_cert": args.tls_cert,
        "server.tls_key": args.tls_key,
    }
    try:
        settings = config.load(args.config, overrides=overrides)
    except config.ConfigError as exc:
        print(f"frontauth: {exc}", file=sys.stderr)
        return 2
    from frontauth.browser import BROWSER_COOKIE

    # Cookie values are credentials too, wherever a record mentions them by name.
    redacted = (*settings.logging.redact, settings.session.cookie_name, BROWSER_COOKIE)
    log.configure(settings.logging.level, settings.logging.format, redacted)
    logging.getLogger("aiohttp.server").addFilter(UnparsableRequestFilter())
    try:
        # The TLS files are read first, so that a bad one stops start-up before
        # _prepare writes a development key or secret.
        ssl_context = tls.server_context(settings)
        prepared = _prepare(settings)
    except config.ConfigError as exc:
        print(f"frontauth: {exc}", file=sys.stderr)
        return 2
    try:
        return _run_loop(settings.server.event_loop, _run(settings, prepared, ssl_context))
    except KeyboardInterrupt:
        return 0


def _run_loop(choice: str, main: typing.Coroutine[typing.Any, typing.Any, int]) -> int:
    """Run ``main`` on the configured event loop: uvloop for "uvloop", and for "auto" when it is installed."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            # Settings validation has already stopped start-up when "uvloop" was set explicitly.
            pass
        else:
            logger.debug("event loop: uvloop %s", uvloop.__version__)
            return uvloop.run(main)
    return asyncio.run(main)


def _prepare(settings: config.Settings) -> signing_keys.SigningKeys | None:
    """Load everything that can fail on configuration before the socket opens."""
    from frontauth.services import load_server_secret
    from frontauth.users import UserDirectory

    # Checks that only read come first, so a bad users file stops start-up
    # before a development key is generated. NOTE: storage is opened later,
    # so a start-up that fails on storage still leaves the generated files.
    UserDirectory(settings)
    # Transparent and public modes sign nothing, so they need no signing key.
    keys = signing_keys.load(settings) if settings.mode in config.ISSUING_MODES else None
    load_server_secret(settings)
    return keys


async def _run(
    settings: config.Settings, keys: signing_keys.SigningKeys | None, ssl_context: ssl.SSLContext | None
) -> int:
    from frontauth.app import create_app, open_storage
    from frontauth.metrics import METRICS, metrics_app
    from frontauth.storage import StorageUnavailable

    upstream = None
    if settings.mode in config.UPSTREAM_MODES:
        from frontauth.upstream import DiscoveryError, connect

        try:
            upstream = await connect(settings)
        except DiscoveryError as exc:
            print(f"frontauth: {exc}", file=sys.stderr)
            return 1
    try:
        driver = await open_storage(settings)
    except StorageUnavailable as exc:
        print(f"frontauth: storage at storage.url cannot be used: {exc.reason}", file=sys.stderr)
        if upstream is not None:
            await upstream.close()
        return 1
    except config.ConfigError as exc:
        # The driver checks its URL and TLS files only when it opens.
        print(f"frontauth: {exc}", file=sys.stderr)
        if upstream is not None:
            await upstream.close()
        return 2
    app = create_app(settings, keys=keys, driver=driver, upstream=upstream)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    runners = [runner]
    listeners = [(runner, settings.server.host, settings.server.port, ssl_context)]
    if settings.metrics.enabled and settings.metrics.port is not None:
        metrics_runner = web.AppRunner(metrics_app(app[METRICS]), access_log=None, handle_signals=False)
        runners.append(metrics_runner)
        listeners.append((metrics_runner, settings.metrics.host, settings.metrics.port, None))
    for listener_runner, host, port, context in listeners:
        if listener_runner is not runner:
            await listener_runner.setup()
        try:
            await web.TCPSite(listener_runner, host, port, ssl_context=context).start()
        except OSError as exc:
            print(f"frontauth: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
            for started in runners:
                await started.cleanup()
            await driver.close()
            return 1
    _log_startup(settings, keys, driver.name)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    logger.info("stopping")
    for started in reversed(runners):
        await started.cleanup()
    await driver.close()
    return 0


def _event_loop_name(choice: str) -> str:
    """Name the running event loop for the start-up log, and why auto fell back to asyncio."""
    module = type(asyncio.get_running_loop()).__module__
    if module.startswith("uvloop"):
        return f"uvloop {sys.modules['uvloop'].__version__}"
    return "asyncio (uvloop is not installed)" if choice == "auto" else "asyncio"


def _log_startup(settings: config.Settings, keys: signing_keys.SigningKeys | None, driver_name: str) -> None:
    signing = f"signing key {keys.kid} ({keys.alg})" if keys is not None else "no signing key (issues nothing)"
    logger.info(
        "frontauth serving %s mode, %s profile, on %s (issuer %s), storage %s, %s",
        settings.mode, settings.profile, f"{settings.server.host}:{settings.server.port}",
        settings.issuer, driver_name, signing,
    )
    if settings.mode in config.UPSTREAM_MODES:
        logger.info("upstream identity provider: %s", settings.upstream.provider)
    for setting, message in config.warnings_of(settings):
        logger.warning("%s (%s)", message, setting)
    logger.info("transport: %s", "HTTPS with server.tls_cert" if settings.server.tls_cert else "plain HTTP")
    logger.info("event loop: %s", _event_loop_name(settings.server.event_loop))
    if settings.metrics.enabled:
        where = (
            f"{settings.metrics.host}:{settings.metrics.port}" if settings.metrics.port is not None
            else "the main listener"
        )
        logger.info("Prometheus metrics at /metrics on %s", where)
    if driver_name == "memory":
        logger.warning("the memory driver keeps state in this process only: it is lost on restart and not shared")
    if settings.development_login:
        logger.warning(
            "development sign-in is on: any e-mail address signs in without a password. "
            "Set login.users_file or login.authenticate before real users arrive."
        )
    logger.info("resources (token audiences): %s", ", ".join(settings.audiences))
