"""``frontauth check``: the production checklist as a command.

Each audit reads the settings (and, with ``--url``, a running server; see
:mod:`frontauth.check_probes`) and returns one :class:`Finding`: pass, warn or
fail, the reason, and the setting that fixes it. An item the checklist marks
as required fails: HTTPS, persistent storage, stable keys, the audience, no
private key material published, no development sign-in, and every file the
settings name present and readable. An item it
recommends only warns: rate limiting, monitoring, key rotation, MACHINE_ID,
consent. The command exits 0 when nothing fails and 1 otherwise.

The audits never write: with no signing key configured they report it
instead of generating the development key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import typing
import urllib.parse

import attrs

from frontauth import config
from frontauth import keys as signing_keys

PASS = "pass"
WARN = "warn"
FAIL = "fail"

SECONDS_PER_DAY = 86400


@attrs.frozen
class Finding:
    """The outcome of one checklist item."""

    item: str
    status: str
    reason: str
    fix: str = ""


def _storage_scheme(settings: config.Settings) -> str:
    return urllib.parse.urlsplit(settings.storage.url).scheme.lower()


def _redis_hosts(settings: config.Settings) -> list[str]:
    """Return the host names of a Redis or Redis Cluster URL (several seeds in a cluster URL)."""
    netloc = urllib.parse.urlsplit(settings.storage.url).netloc.rpartition("@")[2]
    hosts = [urllib.parse.urlsplit("//" + seed).hostname or "" for seed in netloc.split(",") if seed]
    return [host for host in hosts if host] or [settings.storage.redis_host or "localhost"]


def check_profile(settings: config.Settings) -> Finding:
    if settings.profile == "development":
        return Finding(
            "profile", FAIL,
            "the development profile generates its signing key and secret on disk and allows the development sign-in",
            "profile",
        )
    return Finding("profile", PASS, f"{settings.profile} profile")


def check_persistent_storage(settings: config.Settings) -> Finding:
    scheme = _storage_scheme(settings)
    if scheme == "memory":
        return Finding(
            "persistent storage", FAIL,
            "memory:// loses every session, code and refresh token on restart and is not shared between instances",
            "storage.url",
        )
    if scheme == "sqlite":
        return Finding(
            "persistent storage", WARN,
            "sqlite:// survives restarts but serves one host only; several hosts need Redis",
            "storage.url",
        )
    return Finding("persistent storage", PASS, f"{scheme}:// is shared by every instance and survives restarts")


def check_storage_tls(settings: config.Settings) -> Finding:
    from frontauth.clients import is_loopback_host

    scheme = _storage_scheme(settings)
    if not scheme.startswith("redis"):
        return Finding("storage TLS", PASS, f"{scheme}:// opens no network connection")
    if scheme.startswith("rediss"):
        if not settings.storage.tls_verify_hostname:
            return Finding(
                "storage TLS", WARN, "TLS to Redis without checking the server's host name", "storage.tls_verify_hostname"
            )
        return Finding("storage TLS", PASS, f"{scheme}:// encrypts and authenticates the Redis connection")
    if all(is_loopback_host(host) for host in _redis_hosts(settings)):
        return Finding("storage TLS", WARN, "plain-text Redis on a loopback address", "storage.url")
    return Finding(
        "storage TLS", FAIL,
        "plain-text Redis over the network exposes sessions and refresh-token records; use rediss://",
        "storage.url",
    )


def _signing_jwk(settings: config.Settings) -> dict[str, typing.Any] | None:
    """Return the configured private signing JWK, or None when none is configured."""
    text = settings.keys.sign_key
    if text is None and settings.keys.sign_key_file is not None:
        try:
            with open(settings.keys.sign_key_file, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise config.ConfigError("keys.sign_key_file", None, f"cannot read {settings.keys.sign_key_file!r}: {exc.strerror}") from None
    return None if text is None else json.loads(text)


def check_signing_key(settings: config.Settings) -> Finding:
    if settings.keys.sign_key is None and settings.keys.sign_key_file is None:
        return Finding(
            "signing key", FAIL,
            "no signing key configured: a generated key differs per host and is lost with its folder, "
            "which invalidates every issued token",
            "keys.sign_key (JWT_SIGNING_KEY)",
        )
    try:
        loaded = signing_keys.load(settings)
    except (config.ConfigError, ValueError) as exc:
        return Finding("signing key", FAIL, str(exc), "keys.sign_key (JWT_SIGNING_KEY)")
    return Finding("signing key", PASS, f"stable {loaded.alg} key with kid {loaded.kid!r} from configuration")


def check_server_secret(settings: config.Settings) -> Finding:
    if settings.server.secret is None:
        return Finding(
            "server secret", FAIL,
            "no server.secret: a generated one differs per host, so sessions and CSRF tokens break across instances",
            "server.secret (FRONTAUTH_SERVER_SECRET)",
        )
    return Finding("server secret", PASS, "server.secret is set")


def check_https(settings: config.Settings) -> Finding:
    if urllib.parse.urlsplit(settings.issuer).scheme == "https":
        return Finding("HTTPS public URL", PASS, f"issuer {settings.issuer}")
    return Finding(
        "HTTPS public URL", FAIL,
        f"issuer {settings.issuer} is plain HTTP: codes, tokens and passwords would cross the network unencrypted",
        "public_url",
    )


def check_pkce(settings: config.Settings) -> Finding:
    # frontauth has no setting that relaxes PKCE; --url confirms the served metadata.
    return Finding("PKCE S256 only", PASS, "every client must send an S256 challenge; plain and missing are rejected")


def check_refresh_rotation(settings: config.Settings) -> Finding:
    grace = settings.tokens.refresh_grace
    if grace == 0:
        return Finding(
            "refresh rotation", PASS, "each refresh token works once; presenting a used one revokes its whole family"
        )
    return Finding(
        "refresh rotation",
        PASS,
        f"each refresh token works once; a retry within {grace:g} s gets the same tokens, "
        "later reuse revokes its whole family",
    )


def check_audience(settings: config.Settings) -> Finding:
    if settings.resources:
        return Finding("audience", PASS, f"tokens are issued for {', '.join(settings.resources)}")
    return Finding(
        "audience", FAIL,
        f"resources is unset, so tokens name the guessed audience {settings.audiences[0]}; "
        "set the MCP server's URL so that it can check aud",
        "resources",
    )


def check_resource_origin(settings: config.Settings) -> Finding:
    """RFC 9728 §3.3: the root resource metadata must name a resource on frontauth's own origin.

    Transparent and public modes serve the metadata of the resource they
    stand in front of at the root well-known URL. A client that built that
    URL from a resource on another origin rejects the document.
    """
    from frontauth import transparent
    from frontauth.endpoints.metadata import origin_of

    resource = transparent.audience(settings) if settings.mode == "transparent" else settings.audiences[0]
    if origin_of(resource) == origin_of(settings.issuer):
        return Finding("resource origin", PASS, f"the root resource metadata names {resource}, on this origin")
    return Finding(
        "resource origin", WARN,
        f"the root resource metadata names {resource}, on another origin than {settings.issuer}; clients "
        "reject it (RFC 9728 section 3.3): serve frontauth on the resource's origin or set public_url to it",
        "public_url",
    )


def check_machine_id(settings: config.Settings) -> Finding:
    scheme = _storage_scheme(settings)
    if scheme == "memory":
        return Finding("MACHINE_ID", PASS, "storage is not shared between instances")
    # SQLite serves one host (see check_persistent_storage), so MACHINE_ID groups nothing.
    if scheme == "sqlite":
        return Finding("MACHINE_ID", PASS, "sqlite:// storage is not shared between hosts")
    if settings.server.machine_id is None:
        return Finding(
            "MACHINE_ID", WARN,
            "shared storage without MACHINE_ID: set the same value on every instance that shares it",
            "server.machine_id (MACHINE_ID)",
        )
    return Finding("MACHINE_ID", PASS, "server.machine_id is set")


def check_rate_limiting(settings: config.Settings) -> Finding:
    limits = settings.ratelimit
    if not limits.enabled:
        return Finding("rate limiting", WARN, "rate limiting is off: token and sign-in endpoints accept unlimited guesses", "ratelimit.enabled")
    missing = [name for name in ("token", "login") if name not in limits.endpoints]
    if missing:
        return Finding("rate limiting", WARN, f"not applied to {', '.join(missing)}", "ratelimit.endpoints")
    per_endpoint = ", ".join(f"{name} {limits.limit_for(name)}" for name in limits.endpoints)
    return Finding("rate limiting", PASS, f"requests per address in {limits.window:g} s: {per_endpoint}")


def check_monitoring(settings: config.Settings) -> Finding:
    if not settings.metrics.enabled:
        return Finding("monitoring", WARN, "metrics are off, so docs/alerts.yml has nothing to watch", "metrics.enabled")
    where = f"{settings.metrics.host}:{settings.metrics.port}" if settings.metrics.port else "the main listener"
    return Finding("monitoring", PASS, f"Prometheus metrics at /metrics on {where}")


def check_key_age(settings: config.Settings, now: float) -> Finding:
    """Compare the signing JWK's ``iat`` (written by ``frontauth keys generate``) with keys.rotation_days."""
    try:
        jwk = _signing_jwk(settings)
    except (config.ConfigError, ValueError):
        return Finding("key age", WARN, "the signing key cannot be read", "keys.sign_key")
    if jwk is None:
        return Finding("key age", WARN, "no configured signing key to date", "keys.sign_key")
    issued = jwk.get("iat")
    if not isinstance(issued, (int, float)):
        return Finding(
            "key age", WARN,
            "the signing JWK has no iat, so its age is unknown; keys from `frontauth keys generate` carry one",
            "keys.sign_key",
        )
    age_days = (now - issued) / SECONDS_PER_DAY
    limit = settings.keys.rotation_days
    if age_days > limit:
        return Finding(
            "key age", WARN,
            f"the signing key is {age_days:.0f} days old, past the {limit}-day rotation period",
            "keys.sign_key (rotate; keep the old public half in keys.previous)",
        )
    return Finding("key age", PASS, f"{age_days:.0f} days old, rotation due after {limit} days")


def check_published_jwks(settings: config.Settings) -> Finding:
    leaked = []
    for i, text in enumerate(settings.keys.previous):
        try:
            members = set(json.loads(text))
        except ValueError:
            return Finding("published JWKS", FAIL, f"keys.previous[{i}] is not a JSON object", f"keys.previous[{i}]")
        if members & signing_keys.PRIVATE_MEMBERS:
            leaked.append(f"keys.previous[{i}] ({', '.join(sorted(members & signing_keys.PRIVATE_MEMBERS))})")
    if leaked:
        return Finding("published JWKS", FAIL, f"private members would be published: {'; '.join(leaked)}", "keys.previous")
    return Finding(
        "published JWKS", PASS,
        f"public halves only: the signing key and {len(settings.keys.previous)} previous key(s)",
    )


def check_registration(settings: config.Settings) -> Finding:
    registration = settings.registration
    if not registration.enabled:
        return Finding("client registration", PASS, "dynamic registration is off; clients come from configuration")
    if registration.initial_access_token is not None:
        return Finding("client registration", PASS, "registration requires the initial access token")
    if registration.allowed_redirect_uris:
        return Finding(
            "client registration", PASS,
            f"open registration limited to redirect URIs matching {', '.join(registration.allowed_redirect_uris)}",
        )
    return Finding(
        "client registration", WARN,
        f"anyone may register up to {registration.max_clients} clients with any https or loopback redirect URI",
        "registration.initial_access_token or registration.allowed_redirect_uris",
    )


def check_development_login(settings: config.Settings) -> Finding:
    if settings.development_login:
        return Finding("development sign-in", FAIL, "any e-mail address signs in without a password", "login.users_file or login.authenticate")
    source = "login.users_file" if settings.login.users_file else "login.authenticate"
    return Finding("development sign-in", PASS, f"off; passwords are checked through {source}")


def check_consent(settings: config.Settings) -> Finding:
    if not settings.consent.enabled:
        return Finding("consent", WARN, "codes are issued without showing the person what the client gets", "consent.enabled")
    return Finding("consent", PASS, "the consent page names the client and the scopes")


def check_lifetimes(settings: config.Settings) -> Finding:
    access_limit, refresh_limit = config.PROFILE_LIFETIMES[settings.profile]
    longer = []
    if settings.access_ttl > access_limit:
        longer.append(f"access tokens {settings.access_ttl} s (guideline {access_limit} s)")
    if settings.refresh_ttl > refresh_limit:
        longer.append(f"refresh tokens {settings.refresh_ttl} s (guideline {refresh_limit} s)")
    if longer:
        return Finding(
            "token lifetimes", WARN, f"longer than the {settings.profile} guideline: {'; '.join(longer)}",
            "tokens.access_ttl, tokens.refresh_ttl",
        )
    return Finding(
        "token lifetimes", PASS,
        f"access {settings.access_ttl} s, refresh {settings.refresh_ttl} s, within the {settings.profile} guideline",
    )


def check_upstream_issuer(settings: config.Settings) -> Finding:
    """Warn when upstream tokens of any issuer would be accepted for the default audience."""
    for setting, message in config.warnings_of(settings):
        if setting == "upstream.expected_audience":
            return Finding("upstream issuer", WARN, message, setting)
    return Finding("upstream issuer", PASS, f"upstream tokens are checked against {settings.upstream.provider}")


def audit_settings(settings: config.Settings, now: float | None = None) -> list[Finding]:
    """Run every configuration audit in checklist order; the upstream audit only in the upstream modes."""
    from frontauth.check_files import check_files

    now = time.time() if now is None else now
    upstream = [check_upstream_issuer(settings)] if settings.mode in config.UPSTREAM_MODES else []
    if settings.mode in ("transparent", "public"):
        upstream.append(check_resource_origin(settings))
    return upstream + [
        check_profile(settings),
        check_files(settings),
        check_persistent_storage(settings),
        check_storage_tls(settings),
        check_signing_key(settings),
        check_server_secret(settings),
        check_https(settings),
        check_pkce(settings),
        check_refresh_rotation(settings),
        check_audience(settings),
        check_machine_id(settings),
        check_rate_limiting(settings),
        check_monitoring(settings),
        check_key_age(settings, now),
        check_published_jwks(settings),
        check_registration(settings),
        check_development_login(settings),
        check_consent(settings),
        check_lifetimes(settings),
    ]


# ---------------------------------------------------------------------------
# The command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML configuration file to audit (environment variables apply too)")
    parser.add_argument(
        "--url",
        help="base URL of a running frontauth to probe, e.g. https://auth.example.com; without --config "
        "only the probes run, and the URL must be the issuer",
    )
    parser.add_argument("--json", action="store_true", help="print the findings as one JSON document")
    parser.add_argument("--ca-file", help="CA bundle (PEM) that signs the probed server's certificate")
    parser.add_argument("--client-id", help="public client for the token endpoint probe (default: first public configured client)")


def _summary(findings: list[Finding]) -> dict[str, int]:
    return {status: sum(1 for f in findings if f.status == status) for status in (PASS, WARN, FAIL)}


def format_text(findings: list[Finding]) -> str:
    """Render one line per finding, and a fix line under each warning and failure."""
    width = max(len(f.item) for f in findings)
    lines = []
    for finding in findings:
        lines.append(f"{finding.status.upper():<4}  {finding.item:<{width}}  {finding.reason}")
        if finding.fix and finding.status != PASS:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {finding.fix}")
    counts = _summary(findings)
    lines.append(f"check: {counts[PASS]} pass, {counts[WARN]} warn, {counts[FAIL]} fail")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Audit the configuration and probe ``--url``; print the findings and return the exit code."""
    from frontauth.check_probes import probe

    findings: list[Finding] = []
    settings: config.Settings | None = None
    # --url alone probes only, and expects the probed URL to be the issuer.
    if args.config or not args.url:
        try:
            settings = config.load(args.config)
        except config.ConfigError as exc:
            findings.append(Finding("configuration", FAIL, str(exc), exc.setting))
        if settings is not None:
            findings.extend(audit_settings(settings))
    if args.url:
        findings.extend(asyncio.run(probe(args.url, settings, ca_file=args.ca_file, client_id=args.client_id)))
    # SECURITY: --url and URL settings may carry a password, and reasons quote URLs.
    findings = [
        attrs.evolve(f, reason=config.redact_userinfo(f.reason), fix=config.redact_userinfo(f.fix)) for f in findings
    ]
    if args.json:
        document = {
            "ok": not any(f.status == FAIL for f in findings),
            "summary": _summary(findings),
            "findings": [attrs.asdict(f) for f in findings],
        }
        print(json.dumps(document, indent=2))
    else:
        print(format_text(findings))
    return 1 if any(f.status == FAIL for f in findings) else 0


def main(argv: typing.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="frontauth check", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
