"""Settings: a tree of frozen attrs classes, loaded once at start-up.

Sources, later ones winning: defaults, the TOML file given with ``--config``,
environment variables (``FRONTAUTH_<SECTION>_<KEY>``, plus the names operators
already use, see ``ENV_ALIASES``), then command-line flags. Every value keeps
the name of the source it came from, so that a validation error can name it, as in
"storage.url (from environment variable FRONTAUTH_STORAGE_URL)".

Request input never goes through this module: attrs validators here check
configuration values only.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import stat
import tomllib
import types
import typing
import urllib.parse

import attrs

PROFILES = ("development", "staging", "production", "high-security")
MODES = ("local", "public", "transparent", "remote")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")
IMPLEMENTED_MODES = MODES
# Modes that mint and sign their own tokens, so they need a signing key.
ISSUING_MODES = ("local", "remote")
# Modes whose identities come from the upstream identity provider.
UPSTREAM_MODES = ("transparent", "remote")

# profile -> (access token lifetime, refresh token lifetime), in seconds
PROFILE_LIFETIMES: dict[str, tuple[int, int]] = {
    "development": (3600, 7 * 86400),
    "staging": (1800, 7 * 86400),
    "production": (900, 30 * 86400),
    "high-security": (300, 86400),
}

# A stolen refresh token used inside the grace window is not detected as
# reuse, so the window stays short enough for a retry, not for an attacker.
MAX_REFRESH_GRACE = 60.0

DEFAULT_SCOPES = {
    "mcp": "Use the MCP server's tools, resources and prompts in your name",
}

# Names operators already use, mapped onto setting paths.
ENV_ALIASES: dict[str, str] = {
    "JWT_SIGNING_KEY": "keys.sign_key",
    "MACHINE_ID": "server.machine_id",
    "REDIS_HOST": "storage.redis_host",
    "REDIS_PORT": "storage.redis_port",
    "REDIS_PASSWORD": "storage.redis_password",
    "IDP_PROVIDER_URL": "upstream.provider",
    "IDP_CLIENT_ID": "upstream.client_id",
    "IDP_CLIENT_SECRET": "upstream.client_secret",
    "IDP_EXPECTED_AUDIENCE": "upstream.expected_audience",
}

ENV_PREFIX = "FRONTAUTH_"


# The user name and password part ("user:password@") of a URL, or of a
# scheme-relative "//user:password@host", inside free text. Greedy up to the
# last "@" before the path, as urllib.parse.urlsplit splits it.
_URL_USERINFO = re.compile(r"(?i)((?:\b[a-z][a-z0-9+.-]*:)?//)[^/?#\s]*@")


def redact_userinfo(text: str) -> str:
    """Replace the user name and password of every URL in ``text`` with ``***``."""
    return _URL_USERINFO.sub(r"\1***@", text)


class ConfigError(Exception):
    """A setting is invalid; the message names the setting and its source.

    The message never carries the user name or password of a URL it quotes,
    because it reaches stderr and the output of ``frontauth check``.
    """

    def __init__(self, setting: str, source: str | None, message: str) -> None:
        where = f" (from {source})" if source else ""
        super().__init__(f"invalid setting {setting}{where}: {redact_userinfo(message)}")
        self.setting = setting
        self.source = source


def _help(text: str, **kwargs: typing.Any) -> typing.Any:
    """Declare an attrs field with help text kept in its metadata."""
    metadata = {"help": text}
    return attrs.field(metadata=metadata, **kwargs)


@attrs.frozen
class ServerSettings:
    host: str = _help("Address to listen on.", default="127.0.0.1")
    port: int = _help("TCP port to listen on.", default=8080)
    secret: str | None = _help(
        "Server secret for session encryption and CSRF tokens (at least 32 characters). "
        "Generated and kept in state_dir in the development profile.",
        default=None,
        repr=False,
    )
    machine_id: str | None = _help(
        "Instance group identity mixed into the encryption key; instances that share "
        "storage must share it.",
        default=None,
    )
    state_dir: str = _help(
        "Folder for files the development profile generates (signing key, secret).",
        default=".frontauth",
    )
    max_body_size: int = _help("Largest accepted request body, in bytes.", default=64 * 1024)
    trust_proxy: bool = _help(
        "Take the client address from the last X-Forwarded-For entry (set by the proxy in front); "
        "leave off when clients connect directly, because they can forge the header.",
        default=False,
    )
    tls_cert: str | None = _help(
        "Certificate chain (PEM) to serve HTTPS directly; needs tls_key. Unset serves plain HTTP.", default=None
    )
    tls_key: str | None = _help("Private key (PEM) of tls_cert.", default=None)
    event_loop: str = _help(
        "Event loop of serve: auto (uvloop when installed, else asyncio), uvloop or asyncio.", default="auto"
    )


@attrs.frozen
class StorageSettings:
    url: str = _help(
        "Storage driver URL: memory://, redis://, rediss://, redis+cluster://, rediss+cluster://, "
        "sqlite:///relative/path.db or sqlite:////absolute/path.db.",
        default="memory://",
    )
    prefix: str = _help("Prefix of every key the driver writes.", default="frontauth:")
    cleanup_interval: float = _help(
        "Seconds between sweeps of expired records (memory and SQLite drivers); 0 turns it off.", default=60.0
    )
    pool_size: int = _help(
        "Maximum connections per node of a Redis Cluster. A single Redis server gets one multiplexed connection.", default=50
    )
    connect_timeout: float = _help("Seconds to wait for a Redis connection.", default=5.0)
    command_timeout: float = _help("Seconds to wait for a Redis reply.", default=5.0)
    retry_attempts: int = _help(
        "Times a Redis command is tried again after a connection error, waiting 0.1 s and doubling "
        "up to 1 s in between. On a Redis Cluster, timeouts and fail-over errors are retried too.",
        default=3,
    )
    tls_ca: str | None = _help("CA bundle (PEM) that signs the Redis server certificate.", default=None)
    tls_cert: str | None = _help("Client certificate (PEM) for Redis mutual TLS.", default=None)
    tls_key: str | None = _help("Client private key (PEM) for Redis mutual TLS.", default=None)
    tls_verify_hostname: bool = _help("Check the Redis server certificate's host name.", default=True)
    redis_host: str | None = _help("Redis host when the URL leaves it out (REDIS_HOST).", default=None)
    redis_port: int | None = _help("Redis port when the URL leaves it out (REDIS_PORT).", default=None)
    redis_password: str | None = _help(
        "Redis password when the URL has none (REDIS_PASSWORD).", default=None, repr=False
    )
    startup_wait: float = _help(
        "Seconds to keep retrying an unreachable storage at start-up before giving up.", default=0.0
    )
    sqlite_busy_timeout: float = _help(
        "Seconds a SQLite operation waits for another connection's write lock before it fails.", default=5.0
    )


@attrs.frozen
class KeySettings:
    sign_key: str | None = _help(
        "Private JWK (JSON) that signs access tokens (JWT_SIGNING_KEY).", default=None, repr=False
    )
    sign_key_file: str | None = _help("File holding the private signing JWK.", default=None)
    previous: tuple[str, ...] = _help(
        "Public JWKs (JSON) of earlier signing keys, still trusted during a rollover.",
        default=(),
    )
    algorithm: str = _help("Algorithm of a generated development key: ES256, RS256 or EdDSA.", default="ES256")
    rotation_days: int = _help(
        "Age in days, from the signing JWK's iat member, after which frontauth check reports the key as due "
        "for rotation.",
        default=90,
    )


@attrs.frozen
class TokenSettings:
    access_ttl: int | None = _help("Access token lifetime in seconds; the profile sets the default.", default=None)
    refresh_ttl: int | None = _help("Refresh token lifetime in seconds; the profile sets the default.", default=None)
    code_ttl: int = _help("Authorization code lifetime in seconds.", default=60)
    pending_ttl: int = _help("Lifetime of a pending authorization (sign-in and consent) in seconds.", default=600)
    leeway: int = _help("Clock skew tolerated on exp, nbf and iat, in seconds.", default=30)
    refresh_grace: float = _help(
        "Seconds after a refresh during which the same client presenting the same refresh token again gets "
        "the same new tokens instead of revoking the family; 0 turns the grace window off.",
        default=5.0,
    )


@attrs.frozen
class LoginSettings:
    users_file: str | None = _help("TOML file of users and password hashes (frontauth users add).", default=None)
    authenticate: str | None = _help(
        "Dotted path 'package.module:function' of an async callable(username, password) "
        "returning a subject dict or None.",
        default=None,
    )
    development_login: bool | None = _help(
        "Accept any e-mail address without a password (development profile only). "
        "Defaults to on in development when no users_file or authenticate is set.",
        default=None,
    )
    max_failures: int = _help(
        "Failed sign-ins allowed per user name in failure_window, whether or not the user exists; "
        "then the form rejects that name until the window moves on. 0 turns the limit off.",
        default=10,
    )
    failure_window: float = _help("Length of the window that max_failures counts in, in seconds.", default=900.0)


@attrs.frozen
class SessionSettings:
    ttl: int = _help("Lifetime of the browser session at the authorization server, in seconds.", default=8 * 3600)
    cookie_name: str = _help("Name of the session cookie.", default="frontauth_session")


@attrs.frozen
class ConsentSettings:
    enabled: bool = _help("Show the consent page before issuing a code.", default=True)
    remember: bool = _help("Skip the consent page when the user already approved these scopes.", default=True)


@attrs.frozen
class PagesSettings:
    product_name: str = _help("Name shown in the header and title of the sign-in, consent and error pages.",
                              default="frontauth")
    logo_file: str | None = _help(
        "PNG, JPEG, SVG or WebP file shown beside product_name; frontauth serves it itself.", default=None
    )
    accent_color: str = _help("Colour of buttons and links, as #rgb or #rrggbb; white button text must stay readable on it.", default="#1f5fbf")
    background_color: str = _help("Page background colour, as #rgb or #rrggbb.", default="#f4f6f8")
    text_color: str = _help("Body text colour, as #rgb or #rrggbb.", default="#1b1f24")
    template_dir: str | None = _help(
        "Folder of Jinja templates searched before the packaged ones; a file there named like a packaged "
        "template (base.html, login.html, consent.html, error.html, closed.html) replaces it.",
        default=None,
    )


@attrs.frozen
class RegistrationSettings:
    enabled: bool = _help("Accept RFC 7591 dynamic client registration.", default=True)
    initial_access_token: str | None = _help(
        "Bearer token that registration requests must carry; unset accepts anyone.", default=None, repr=False
    )
    max_clients: int = _help(
        "Maximum number of dynamic registrations within unused_ttl (within ten years when unused_ttl is 0).",
        default=10000,
    )
    allowed_redirect_uris: tuple[str, ...] = _help(
        "Shell-style patterns (fnmatch) a registered redirect_uri must match; empty allows "
        "https and loopback URIs.",
        default=(),
    )
    unused_ttl: int = _help(
        "Seconds after which a dynamically registered client that never redeemed an authorization code "
        "is deleted; 0 keeps every registration.",
        default=86400,
    )
    max_per_address: int = _help(
        "Registrations accepted from one client address per address_window (applies while ratelimit.enabled).",
        default=20,
    )
    address_window: float = _help("Length of the per-address registration window, in seconds.", default=3600.0)


@attrs.frozen
class CimdSettings:
    enabled: bool = _help("Accept client_id URLs that name a client ID metadata document.", default=True)
    allow_http_loopback: bool = _help(
        "Also fetch http documents, and connect to loopback addresses; for tests only.", default=False
    )
    allowed_networks: tuple[str, ...] = _help(
        "Networks (CIDR) documents may resolve to although private or internal, e.g. 10.1.0.0/16.", default=()
    )
    allowed_domains: tuple[str, ...] = _help(
        "Host names (and their subdomains) documents may come from; empty allows every host not denied.", default=()
    )
    denied_domains: tuple[str, ...] = _help("Host names (and their subdomains) documents may not come from.", default=())
    timeout: float = _help("Seconds allowed for fetching one document, redirects included.", default=5.0)
    max_bytes: int = _help("Largest accepted document, in bytes.", default=8192)
    default_cache: float = _help("Seconds a document without Cache-Control max-age is cached.", default=300.0)
    min_cache: float = _help("Fewest seconds a fetched document is cached, whatever its headers say.", default=60.0)
    max_cache: float = _help("Most seconds a fetched document is cached, whatever its headers say.", default=86400.0)
    error_cache: float = _help("Seconds a rejected document stays rejected before it is fetched again.", default=60.0)


@attrs.frozen
class ClientSettings:
    client_id: str = _help("Client identifier.")
    redirect_uris: tuple[str, ...] = _help("Exact redirect URIs of the client.")
    client_name: str | None = _help("Name shown on the consent page.", default=None)
    client_uri: str | None = _help("https address of the client's web site, linked from the consent page.", default=None)
    logo_uri: str | None = _help("https address of the client's logo, shown on the consent page.", default=None)
    client_secret_hash: str | None = _help(
        "Hash of the client secret (frontauth clients hash-secret); unset for a public client.",
        default=None,
        repr=False,
    )
    token_endpoint_auth_method: str | None = _help(
        "none, client_secret_basic or client_secret_post; derived from the secret when unset.",
        default=None,
    )
    scope: str | None = _help("Space-separated scopes the client may request; unset allows all.", default=None)


RATE_LIMITED_ENDPOINTS = ("token", "register", "authorize", "login")


@attrs.frozen
class RateLimitSettings:
    enabled: bool = _help("Limit requests per client address and endpoint (429 with Retry-After).", default=True)
    window: float = _help("Length of the sliding window, in seconds.", default=60.0)
    max_requests: int = _help("Requests allowed per client address and endpoint in one window.", default=100)
    cleanup_interval: float = _help(
        "Seconds between sweeps of expired windows (memory driver; Redis keys expire by themselves); "
        "0 turns it off.",
        default=60.0,
    )
    endpoints: tuple[str, ...] = _help(
        "Endpoints to limit: token (POST /oauth/token), register (POST /oauth/register), "
        "authorize (GET /oauth/authorize), login (POST /oauth/login).",
        default=RATE_LIMITED_ENDPOINTS,
    )
    token_max_requests: int | None = _help("max_requests for the token endpoint; unset uses max_requests.", default=None)
    register_max_requests: int | None = _help(
        "max_requests for the registration endpoint; unset uses max_requests.", default=None
    )
    authorize_max_requests: int | None = _help(
        "max_requests for the authorization endpoint; unset uses max_requests.", default=None
    )
    login_max_requests: int | None = _help(
        "max_requests for sign-in form submissions; unset uses max_requests.", default=None
    )

    def limit_for(self, endpoint: str) -> int:
        """Return the number of requests one client address may send to ``endpoint`` per window."""
        override = getattr(self, f"{endpoint}_max_requests")
        return self.max_requests if override is None else override


@attrs.frozen
class MetricsSettings:
    enabled: bool = _help("Serve Prometheus metrics at /metrics.", default=True)
    host: str = _help("Address of the separate metrics listener (used only when metrics.port is set).", default="127.0.0.1")
    port: int | None = _help(
        "Serve /metrics on this port instead of the main listener; unset serves it beside the OAuth endpoints.",
        default=None,
    )


@attrs.frozen
class UpstreamSettings:
    provider: str | None = _help(
        "Issuer URL of the upstream identity provider (IDP_PROVIDER_URL); required in the transparent "
        "and remote modes. Its endpoints are discovered from OpenID Connect or RFC 8414 metadata.",
        default=None,
    )
    client_id: str | None = _help(
        "Client identifier of frontauth at the upstream provider (IDP_CLIENT_ID); required in remote mode.",
        default=None,
    )
    client_secret: str | None = _help(
        "Client secret of frontauth at the upstream provider (IDP_CLIENT_SECRET), sent with HTTP Basic "
        "authentication; unset makes frontauth a public client that relies on PKCE alone.",
        default=None,
        repr=False,
    )
    scopes: tuple[str, ...] = _help(
        "Scopes frontauth requests from the upstream provider in remote mode.", default=("openid", "profile", "email")
    )
    authorization_endpoint: str | None = _help(
        "Upstream authorization endpoint; unset takes it from the provider's metadata.", default=None
    )
    token_endpoint: str | None = _help("Upstream token endpoint; unset takes it from the provider's metadata.", default=None)
    userinfo_endpoint: str | None = _help(
        "Upstream userinfo endpoint; unset takes it from the provider's metadata.", default=None
    )
    jwks_uri: str | None = _help("Upstream JWKS URL; unset takes it from the provider's metadata.", default=None)
    jwks: str | None = _help(
        "Inline JWKS (JSON or a TOML table with a keys array) of the upstream provider; when set, no key set "
        "is fetched.",
        default=None,
    )
    additional_issuers: tuple[str, ...] = _help(
        "More iss values accepted on upstream tokens besides provider (transparent mode).", default=()
    )
    verify_issuer: bool = _help(
        "Check the iss claim of upstream tokens; turning it off needs expected_audience.", default=True
    )
    expected_audience: str | None = _help(
        "Value the aud claim of upstream access tokens must contain (IDP_EXPECTED_AUDIENCE); defaults to the "
        "first of resources.",
        default=None,
    )
    required_scopes: tuple[str, ...] = _help(
        "Scopes every upstream access token must carry (transparent mode); missing ones answer 403.", default=()
    )
    allow_anonymous: bool = _help(
        "Let requests without a token through as the anonymous identity (transparent mode); a token that is "
        "present must still be valid.",
        default=False,
    )
    use_userinfo: bool = _help(
        "Fetch the upstream userinfo endpoint after sign-in to fill in name and e-mail (remote mode).", default=False
    )
    jwks_cache_ttl: float = _help("Seconds a fetched upstream JWKS is used before it is fetched again.", default=300.0)
    jwks_refetch_cooldown: float = _help(
        "Minimum seconds between two JWKS fetches; a token with an unknown kid triggers at most one refetch "
        "per period.",
        default=30.0,
    )
    jwks_max_backoff: float = _help(
        "Maximum delay, in seconds, between attempts after failed JWKS fetches (the delay doubles from 1 s, "
        "with jitter).",
        default=60.0,
    )
    http_timeout: float = _help("Seconds allowed for each request to the upstream provider.", default=5.0)


@attrs.frozen
class PublicSettings:
    anonymous_scopes: tuple[str, ...] = _help(
        "Scopes of the anonymous identity in public mode; each must be in [scopes].", default=("mcp",)
    )


@attrs.frozen
class RefreshSettings:
    skew_seconds: int = _help(
        "Refresh an upstream access token this many seconds before it expires, when the vault is read "
        "(remote mode).",
        default=60,
    )


@attrs.frozen
class LoggingSettings:
    level: str = _help("Log level: DEBUG, INFO, WARNING or ERROR.", default="INFO")
    format: str = _help("text for terminals, json for log collectors.", default="text")
    redact: tuple[str, ...] = _help(
        "More field names whose values are replaced by [redacted] in every log line, besides tokens, codes, "
        "verifiers, secrets, passwords and cookies.",
        default=(),
    )


@attrs.frozen
class Settings:
    mode: str = _help("local, public, transparent or remote.", default="local")
    profile: str = _help("development, staging, production or high-security.", default="development")
    public_url: str | None = _help(
        "External URL of this server; it becomes the issuer. Defaults to http://host:port.", default=None
    )
    resources: tuple[str, ...] = _help(
        "RFC 8707 resource URLs that tokens may be issued for; the first is the default audience. "
        "Defaults to public_url + '/mcp'.",
        default=(),
    )
    scopes: dict[str, str] = _help(
        "Scopes clients may request, each with the description the consent page shows.",
        factory=lambda: dict(DEFAULT_SCOPES),
    )
    default_scope: str | None = _help(
        "Scope granted when a client asks for none; defaults to every configured scope.", default=None
    )
    server: ServerSettings = _help("Listening socket and instance secrets.", factory=ServerSettings)
    storage: StorageSettings = _help("Storage driver.", factory=StorageSettings)
    keys: KeySettings = _help("Token signing keys.", factory=KeySettings)
    tokens: TokenSettings = _help("Token lifetimes.", factory=TokenSettings)
    login: LoginSettings = _help("Sign-in in local mode.", factory=LoginSettings)
    session: SessionSettings = _help("Browser session at the authorization server.", factory=SessionSettings)
    consent: ConsentSettings = _help("Consent page.", factory=ConsentSettings)
    pages: PagesSettings = _help("Branding and templates of the browser pages.", factory=PagesSettings)
    registration: RegistrationSettings = _help("Dynamic client registration.", factory=RegistrationSettings)
    clients: tuple[ClientSettings, ...] = _help("Pre-registered clients.", default=())
    cimd: CimdSettings = _help("Client ID metadata documents.", factory=CimdSettings)
    ratelimit: RateLimitSettings = _help("Rate limits per client address.", factory=RateLimitSettings)
    metrics: MetricsSettings = _help("Prometheus metrics.", factory=MetricsSettings)
    upstream: UpstreamSettings = _help(
        "Upstream identity provider (transparent and remote modes).", factory=UpstreamSettings
    )
    refresh: RefreshSettings = _help("Refresh of upstream tokens kept in the vault.", factory=RefreshSettings)
    public: PublicSettings = _help("The anonymous identity of public mode.", factory=PublicSettings)
    logging: LoggingSettings = _help("Log output.", factory=LoggingSettings)
    # setting path -> where its value came from; filled by load()
    sources: dict[str, str] = attrs.field(factory=dict, repr=False, eq=False)

    # Cached: the hot path reads these on every request, and settings never change once loaded.
    @functools.cached_property
    def issuer(self) -> str:
        """The issuer identifier: public_url without a trailing slash."""
        if self.public_url:
            # RFC 3986 §6.2.2.1: scheme and host are case-insensitive; the issuer uses lower case.
            parts = urllib.parse.urlsplit(self.public_url.rstrip("/"))
            return urllib.parse.urlunsplit(parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower()))
        scheme = "https" if self.server.tls_cert else "http"
        return f"{scheme}://{_url_host(self.server.host)}:{self.server.port}"

    @functools.cached_property
    def audiences(self) -> tuple[str, ...]:
        """Resources that tokens may name in aud; the first is the default."""
        return self.resources or (self.issuer + "/mcp",)

    @property
    def access_ttl(self) -> int:
        return self.tokens.access_ttl or PROFILE_LIFETIMES[self.profile][0]

    @property
    def refresh_ttl(self) -> int:
        return self.tokens.refresh_ttl or PROFILE_LIFETIMES[self.profile][1]

    @property
    def development_login(self) -> bool:
        """Whether the any-e-mail development sign-in is on."""
        if self.login.development_login is not None:
            return self.login.development_login
        return (
            self.mode == "local"
            and self.profile == "development"
            and self.login.users_file is None
            and self.login.authenticate is None
        )

    def source_of(self, path: str) -> str | None:
        """Return where a setting came from; a list item such as 'resources[0]' came from its list."""
        return self.sources.get(path) or self.sources.get(path.split("[")[0])


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


# ---------------------------------------------------------------------------
# Loading: a small converter from nested dicts of strings and TOML values.


@functools.cache
def _field_types(cls: type) -> dict[str, typing.Any]:
    return typing.get_type_hints(cls)


def _strip_optional(tp: typing.Any) -> tuple[typing.Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _convert(value: typing.Any, tp: typing.Any, path: str, source: str, from_env: bool) -> typing.Any:
    tp, optional = _strip_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(path, source, "a value is required")
    origin = typing.get_origin(tp)
    if attrs.has(tp):
        if not isinstance(value, dict):
            raise ConfigError(path, source, f"expected a table, got {type(value).__name__}")
        return value  # nested tables are built by _build
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_env and isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(path, source, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_env and isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(path, source, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if from_env and isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(path, source, f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if path.split("[")[0] in _JSON_STRING_SETTINGS and isinstance(value, dict):
            return json.dumps(value)
        raise ConfigError(path, source, f"expected a string, got {type(value).__name__}")
    if origin is tuple:
        item_type = typing.get_args(tp)[0]
        if from_env and isinstance(value, str):
            value = _parse_env_list(value, path, source)
        if not isinstance(value, list):
            raise ConfigError(path, source, f"expected a list, got {type(value).__name__}")
        return tuple(_convert(v, item_type, f"{path}[{i}]", source, from_env) for i, v in enumerate(value))
    if origin is dict:
        if from_env and isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ConfigError(path, source, "expected a JSON object") from None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(path, source, "expected a table of strings")
        return dict(value)
    raise ConfigError(path, source, f"unsupported setting type {tp!r}")  # pragma: no cover


# Settings holding a JWK accept an inline TOML table as well as a JSON string.
_JSON_STRING_SETTINGS = {"keys.sign_key", "keys.previous", "upstream.jwks"}


def _parse_env_list(value: str, path: str, source: str) -> list[typing.Any]:
    text = value.strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            raise ConfigError(path, source, "expected a JSON list or comma-separated values") from None
        if not isinstance(parsed, list):
            raise ConfigError(path, source, "expected a JSON list")
        return parsed
    return [part.strip() for part in text.split(",") if part.strip()]


def _build(cls: type, data: dict[str, typing.Any], prefix: str, sources: dict[str, str]) -> typing.Any:
    hints = _field_types(cls)
    known = {f.name for f in attrs.fields(cls) if f.name != "sources"}
    for key in data:
        if key not in known:
            path = f"{prefix}{key}"
            raise ConfigError(path, sources.get(path, "configuration"), "unknown setting")
    kwargs: dict[str, typing.Any] = {}
    for name in known:
        path = f"{prefix}{name}"
        tp, _ = _strip_optional(hints[name])
        if name not in data:
            continue
        value = data[name]
        source = sources.get(path, "configuration")
        if attrs.has(tp):
            kwargs[name] = _build(tp, _convert(value, tp, path, source, False), f"{path}.", sources)
        elif tp == tuple[ClientSettings, ...]:
            if not isinstance(value, list):
                raise ConfigError(path, source, "expected an array of tables ([[clients]])")
            kwargs[name] = tuple(
                _build(ClientSettings, item, f"{path}[{i}].", sources)
                if isinstance(item, dict)
                else _raise(ConfigError(f"{path}[{i}]", source, "expected a table"))
                for i, item in enumerate(value)
            )
        else:
            kwargs[name] = _convert(value, hints[name], path, source, source.startswith("environment"))
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(prefix.rstrip(".") or "configuration", None, str(exc)) from None


def _raise(exc: Exception) -> typing.NoReturn:
    raise exc


def _env_paths(cls: type = Settings, prefix: str = "") -> dict[str, str]:
    """Map FRONTAUTH_* variable names to setting paths."""
    names: dict[str, str] = {}
    hints = _field_types(cls)
    for field in attrs.fields(cls):
        if field.name in ("sources", "clients"):
            continue
        path = f"{prefix}{field.name}"
        tp, _ = _strip_optional(hints[field.name])
        if attrs.has(tp):
            names.update(_env_paths(tp, f"{path}."))
        else:
            names[ENV_PREFIX + path.replace(".", "_").replace("-", "_").upper()] = path
    return names


def setting_paths(cls: type = None, prefix: str = "") -> list[str]:  # type: ignore[assignment]
    """Return every setting path in declaration order, e.g. 'storage.url'."""
    cls = cls or Settings
    paths: list[str] = []
    hints = _field_types(cls)
    for field in attrs.fields(cls):
        if field.name == "sources":
            continue
        tp, _ = _strip_optional(hints[field.name])
        if attrs.has(tp):
            paths.extend(setting_paths(tp, f"{prefix}{field.name}."))
        elif tp == tuple[ClientSettings, ...]:
            paths.extend(setting_paths(ClientSettings, f"{prefix}{field.name}[]."))
        else:
            paths.append(prefix + field.name)
    return paths


def help_text(path: str) -> str:
    """Return the help text of a setting path from setting_paths()."""
    cls: type = Settings
    parts = path.replace("[]", "").split(".")
    for part in parts[:-1]:
        tp, _ = _strip_optional(_field_types(cls)[part])
        cls = ClientSettings if tp == tuple[ClientSettings, ...] else tp
    field = attrs.fields_dict(cls)[parts[-1]]
    return str(field.metadata.get("help", ""))


def _put(tree: dict[str, typing.Any], path: str, value: typing.Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        node = tree.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(path, None, f"{part} is not a table")
        tree = node
    tree[parts[-1]] = value


def _mark_sources(tree: dict[str, typing.Any], prefix: str, source: str, sources: dict[str, str]) -> None:
    for key, value in tree.items():
        path = f"{prefix}{key}"
        sources[path] = source
        if isinstance(value, dict) and key not in ("scopes",):
            _mark_sources(value, f"{path}.", source, sources)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    _mark_sources(item, f"{path}[{i}].", source, sources)


def load(
    config_file: str | None = None,
    environ: typing.Mapping[str, str] | None = None,
    overrides: dict[str, typing.Any] | None = None,
) -> Settings:
    """Load and validate settings from a TOML file, the environment and flags.

    Args:
        config_file: path of a TOML file, or None.
        environ: environment variables; defaults to os.environ.
        overrides: setting path -> value from command-line flags.

    Returns:
        The validated settings.

    Raises:
        ConfigError: on the first invalid setting, naming it and its source.
    """
    environ = os.environ if environ is None else environ
    tree: dict[str, typing.Any] = {}
    sources: dict[str, str] = {}
    if config_file:
        tree = _read_config_file(config_file)
        _mark_sources(tree, "", f"file {config_file}", sources)

    env_paths = _env_paths()
    for name, path in sorted(ENV_ALIASES.items()) + sorted(env_paths.items()):
        if name in environ and environ[name] != "":
            _put(tree, path, environ[name])
            sources[path] = f"environment variable {name}"
    for path, value in (overrides or {}).items():
        if value is not None:
            _put(tree, path, value)
            sources[path] = "command line"

    settings = _build(Settings, tree, "", sources)
    settings = attrs.evolve(settings, sources=sources)
    validate(settings)
    return settings


def _read_config_file(path: str) -> dict[str, typing.Any]:
    """Read and parse the TOML file of ``--config``; raise ConfigError naming it on any failure."""
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ConfigError("--config", "command line", f"file {path!r} not found") from None
    except OSError as exc:
        raise ConfigError("--config", "command line", f"cannot read {path!r}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ConfigError("--config", "command line", f"{path!r} is not a regular file")
        try:
            data = fh.read()
        except OSError as exc:
            raise ConfigError("--config", "command line", f"cannot read {path!r}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # TOML 1.0 requires UTF-8.
        raise ConfigError(
            "--config", "command line", f"cannot read {path!r}: not UTF-8 text (invalid byte at offset {exc.start})"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", "command line", f"cannot read {path!r}: {exc}") from None


# ---------------------------------------------------------------------------
# Validation of values that types alone do not catch.


def _fail(settings: Settings, path: str, message: str) -> typing.NoReturn:
    raise ConfigError(path, settings.source_of(path), message)


def validate(settings: Settings) -> None:
    """Check settings that depend on each other; raise ConfigError on the first problem."""
    from frontauth.drivers import UnknownDriver, check_url

    if settings.mode not in MODES:
        _fail(settings, "mode", f"expected one of {', '.join(MODES)}, got {settings.mode!r}")
    if settings.mode not in IMPLEMENTED_MODES:
        _fail(settings, "mode", f"mode {settings.mode!r} is not available in this version; use one of {', '.join(IMPLEMENTED_MODES)}")
    if settings.profile not in PROFILES:
        _fail(settings, "profile", f"expected one of {', '.join(PROFILES)}, got {settings.profile!r}")
    if not 0 < settings.server.port < 65536:
        _fail(settings, "server.port", f"expected a port between 1 and 65535, got {settings.server.port}")
    if settings.server.event_loop not in EVENT_LOOPS:
        _fail(settings, "server.event_loop", f"expected one of {', '.join(EVENT_LOOPS)}, got {settings.server.event_loop!r}")
    if settings.server.event_loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        _fail(settings, "server.event_loop", "uvloop is not installed; install it (pip install uvloop) or use auto")
    if settings.server.max_body_size < 1024:
        _fail(settings, "server.max_body_size", "expected at least 1024 bytes")
    try:
        scheme = check_url(settings.storage.url)
    except UnknownDriver as exc:
        _fail(settings, "storage.url", str(exc))
    if scheme == "sqlite":
        _check_sqlite_path(settings)
    _check_special_files(settings)
    if settings.public_url is not None:
        _check_http_url(settings, "public_url", settings.public_url)
    for i, resource in enumerate(settings.resources):
        _check_http_url(settings, f"resources[{i}]", resource)
    for name in ("access_ttl", "refresh_ttl"):
        value = getattr(settings.tokens, name)
        if value is not None and value <= 0:
            _fail(settings, f"tokens.{name}", f"expected a positive number of seconds, got {value}")
    if not 0 <= settings.tokens.refresh_grace <= MAX_REFRESH_GRACE:
        _fail(
            settings,
            "tokens.refresh_grace",
            f"expected 0 to {MAX_REFRESH_GRACE} seconds, got {settings.tokens.refresh_grace}",
        )
    if not settings.scopes:
        _fail(settings, "scopes", "at least one scope is required")
    for scope in settings.scopes:
        if not scope or any(c in scope for c in ' "\\') or not scope.isprintable():
            _fail(settings, "scopes", f"invalid scope name {scope!r} (RFC 6749 §3.3 scope-token)")
    if settings.default_scope:
        unknown = set(settings.default_scope.split()) - set(settings.scopes)
        if unknown:
            _fail(settings, "default_scope", f"scopes not in [scopes]: {', '.join(sorted(unknown))}")
    if settings.logging.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        _fail(settings, "logging.level", f"expected DEBUG, INFO, WARNING or ERROR, got {settings.logging.level!r}")
    if settings.logging.format not in ("text", "json"):
        _fail(settings, "logging.format", f"expected text or json, got {settings.logging.format!r}")
    if settings.login.development_login and settings.profile != "development":
        _fail(
            settings,
            "login.development_login",
            f"the development sign-in accepts anyone and is refused in the {settings.profile} profile",
        )
    if settings.server.secret is not None and len(settings.server.secret) < 32:
        _fail(settings, "server.secret", "expected at least 32 characters")
    if settings.profile != "development":
        if settings.server.secret is None:
            _fail(settings, "server.secret", f"required in the {settings.profile} profile (FRONTAUTH_SERVER_SECRET)")
        if settings.mode in ISSUING_MODES and settings.keys.sign_key is None and settings.keys.sign_key_file is None:
            _fail(settings, "keys.sign_key", f"a signing key is required in the {settings.profile} profile (JWT_SIGNING_KEY)")
        if settings.mode == "local" and not (settings.login.users_file or settings.login.authenticate):
            _fail(settings, "login.users_file", f"set login.users_file or login.authenticate in the {settings.profile} profile")
    _check_transport(settings)
    _check_upstream(settings)
    _check_public(settings)
    _check_ratelimit(settings)
    _check_registration(settings)
    _check_cimd(settings)
    _check_pages(settings)
    _check_metrics(settings)
    if settings.keys.rotation_days < 1:
        _fail(settings, "keys.rotation_days", f"expected at least 1 day, got {settings.keys.rotation_days}")
    for i, name in enumerate(settings.logging.redact):
        if not name or not all(c.isalnum() or c in "_-." for c in name):
            _fail(settings, f"logging.redact[{i}]", f"expected a field name of letters, digits, '_', '-' or '.', got {name!r}")
    _check_clients(settings)


# Settings that name a file frontauth reads at start-up.
FILE_SETTINGS = (
    "server.tls_cert", "server.tls_key", "storage.tls_ca", "storage.tls_cert", "storage.tls_key",
    "keys.sign_key_file", "login.users_file", "pages.logo_file",
)
# Virtual file systems: their files look regular, but SQLite cannot keep a database there.
_VIRTUAL_FOLDERS = ("/proc", "/sys", "/dev")


def setting_value(settings: Settings, path: str) -> typing.Any:
    """Return the value of a dotted setting path such as 'server.tls_cert'."""
    value: typing.Any = settings
    for name in path.split("."):
        value = getattr(value, name)
    return value


def _special_file_problem(path: str) -> str:
    """Return why ``path`` is a FIFO, device or socket, or '' when it is absent, a folder or a regular file.

    Opening a FIFO for reading blocks until a writer appears, and a device may
    stream without end, so such a path is rejected before anything opens it.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        # Absent or unreadable paths get their own message where the file is read.
        return ""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return ""
    return f"{path!r} is not a regular file"


def _check_special_files(settings: Settings) -> None:
    for name in FILE_SETTINGS:
        path = setting_value(settings, name)
        if path is not None:
            problem = _special_file_problem(path)
            if problem:
                _fail(settings, name, problem)


def _check_sqlite_path(settings: Settings) -> None:
    """Check the database path of a sqlite:// URL before the driver opens or creates anything."""
    from frontauth.drivers.sqlite_schema import parse_url

    try:
        path = parse_url(settings.storage.url)
    except ConfigError as exc:
        raise ConfigError("storage.url", settings.source_of("storage.url"), str(exc).split(": ", 1)[1]) from None
    if "\0" in path:
        _fail(settings, "storage.url", "the database path contains a NUL character (%00)")
    real = os.path.realpath(path)
    if any(real == folder or real.startswith(folder + "/") for folder in _VIRTUAL_FOLDERS):
        shown = path if real == path else f"{path} ({real})"
        _fail(settings, "storage.url", f"{shown} is on a virtual file system; name a file on a disk")
    # SQLite would also create its -wal and -shm files beside a FIFO or device.
    problem = _special_file_problem(path)
    if problem:
        _fail(settings, "storage.url", f"{problem}; name a SQLite database file")


def _check_transport(settings: Settings) -> None:
    """Check the TLS files and, outside development, that the issuer is not plain HTTP."""
    from frontauth.clients import is_loopback_host

    if (settings.server.tls_cert is None) != (settings.server.tls_key is None):
        missing = "server.tls_key" if settings.server.tls_key is None else "server.tls_cert"
        _fail(settings, missing, "server.tls_cert and server.tls_key must be set together")
    parts = urllib.parse.urlsplit(settings.issuer)
    # SECURITY: codes, tokens and passwords cross these endpoints; outside
    # development only a loopback address may serve them without TLS.
    if settings.profile != "development" and parts.scheme == "http" and not is_loopback_host(parts.hostname):
        _fail(
            settings,
            "public_url",
            f"an http public URL is refused in the {settings.profile} profile unless its host is loopback; "
            f"use https (got {settings.issuer!r})",
        )


def _check_upstream(settings: Settings) -> None:
    """Check the [upstream] section in the modes that use it."""
    upstream = settings.upstream
    if settings.mode not in UPSTREAM_MODES:
        return
    if not upstream.provider:
        _fail(settings, "upstream.provider", f"required in {settings.mode} mode (IDP_PROVIDER_URL)")
    _check_http_url(settings, "upstream.provider", upstream.provider)
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        value = getattr(upstream, name)
        if value is not None:
            _check_http_url(settings, f"upstream.{name}", value, allow_query=True)
    for i, issuer in enumerate(upstream.additional_issuers):
        _check_http_url(settings, f"upstream.additional_issuers[{i}]", issuer)
    if upstream.jwks is not None:
        _check_inline_jwks(settings, upstream.jwks)
    if settings.mode == "remote" and not upstream.client_id:
        _fail(settings, "upstream.client_id", "required in remote mode (IDP_CLIENT_ID)")
    for name in ("jwks_cache_ttl", "jwks_refetch_cooldown", "jwks_max_backoff", "http_timeout"):
        value = getattr(upstream, name)
        if value <= 0:
            _fail(settings, f"upstream.{name}", f"expected a positive number of seconds, got {value}")
    if settings.refresh.skew_seconds < 0:
        _fail(settings, "refresh.skew_seconds", f"expected 0 or more seconds, got {settings.refresh.skew_seconds}")


def _check_inline_jwks(settings: Settings, text: str) -> None:
    try:
        document = json.loads(text)
    except ValueError:
        _fail(settings, "upstream.jwks", "expected a JWKS as JSON or as a TOML table")
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not keys:
        _fail(settings, "upstream.jwks", "expected a JWKS with a non-empty keys array")
    private = [str(key.get("kid", i)) for i, key in enumerate(keys) if isinstance(key, dict) and "d" in key]
    if private:
        _fail(settings, "upstream.jwks", f"keys {', '.join(private)} carry private members; give the public keys only")


def _check_public(settings: Settings) -> None:
    if settings.mode != "public":
        return
    for scope in settings.public.anonymous_scopes:
        if scope not in settings.scopes:
            _fail(settings, "public.anonymous_scopes", f"scope {scope!r} is not in [scopes]")


def warnings_of(settings: Settings) -> list[tuple[str, str]]:
    """Return (setting, message) pairs for valid but risky settings, logged at start-up and shown by check."""
    found: list[tuple[str, str]] = []
    upstream = settings.upstream
    if settings.mode == "public" and not settings.ratelimit.enabled:
        found.append((
            "ratelimit.enabled",
            "public mode serves anyone; with ratelimit.enabled off, one client address can send unlimited requests",
        ))
    if settings.mode in UPSTREAM_MODES and not upstream.verify_issuer and not upstream.expected_audience:
        found.append((
            "upstream.expected_audience",
            "upstream.verify_issuer is off and upstream.expected_audience is unset: tokens of any issuer "
            "that the key set verifies are accepted for the default resource; set expected_audience",
        ))
    return found


def _check_ratelimit(settings: Settings) -> None:
    limits = settings.ratelimit
    if limits.window <= 0:
        _fail(settings, "ratelimit.window", f"expected a positive number of seconds, got {limits.window}")
    if limits.cleanup_interval < 0:
        _fail(settings, "ratelimit.cleanup_interval", f"expected 0 (off) or more seconds, got {limits.cleanup_interval}")
    for i, endpoint in enumerate(limits.endpoints):
        if endpoint not in RATE_LIMITED_ENDPOINTS:
            _fail(
                settings,
                f"ratelimit.endpoints[{i}]",
                f"expected one of {', '.join(RATE_LIMITED_ENDPOINTS)}, got {endpoint!r}",
            )
    overrides = {f"{endpoint}_max_requests": getattr(limits, f"{endpoint}_max_requests") for endpoint in RATE_LIMITED_ENDPOINTS}
    for name, value in {"max_requests": limits.max_requests, **overrides}.items():
        if value is not None and value < 1:
            _fail(settings, f"ratelimit.{name}", f"expected at least 1 request, got {value}")


def _check_pages(settings: Settings) -> None:
    """Check the branding values that reach the served stylesheet and the sign-in limit."""
    pages = settings.pages
    for name in ("accent_color", "background_color", "text_color"):
        value = getattr(pages, name)
        # SECURITY: the colours are written into CSS, so only a hex colour may pass.
        if not _HEX_COLOR.fullmatch(value):
            _fail(settings, f"pages.{name}", f"expected a colour like #1f5fbf or #fff, got {value!r}")
    if not pages.product_name.strip() or len(pages.product_name) > 80:
        _fail(settings, "pages.product_name", "expected 1 to 80 characters")
    if pages.logo_file is not None:
        if os.path.splitext(pages.logo_file)[1].lower() not in LOGO_TYPES:
            _fail(settings, "pages.logo_file", f"expected one of {', '.join(LOGO_TYPES)}, got {pages.logo_file!r}")
        if not os.path.exists(pages.logo_file):
            _fail(settings, "pages.logo_file", f"file {pages.logo_file!r} not found")
        if not os.path.isfile(pages.logo_file):
            _fail(settings, "pages.logo_file", f"{pages.logo_file!r} is not a regular file")
    if pages.template_dir is not None:
        if not os.path.exists(pages.template_dir):
            _fail(settings, "pages.template_dir", f"folder {pages.template_dir!r} not found")
        if not os.path.isdir(pages.template_dir):
            _fail(settings, "pages.template_dir", f"{pages.template_dir!r} is not a folder")
    if settings.login.max_failures < 0:
        _fail(settings, "login.max_failures", f"expected 0 (off) or more, got {settings.login.max_failures}")
    if settings.login.failure_window <= 0:
        _fail(settings, "login.failure_window", f"expected a positive number of seconds, got {settings.login.failure_window}")


_HEX_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
# File extension -> Content-Type of the logo that /oauth/brand/logo serves.
LOGO_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml",
              ".webp": "image/webp"}


def _check_cimd(settings: Settings) -> None:
    import ipaddress

    documents = settings.cimd
    for i, network in enumerate(documents.allowed_networks):
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            _fail(settings, f"cimd.allowed_networks[{i}]", f"expected a network such as 10.0.0.0/8, got {network!r}")
    for name in ("timeout", "min_cache", "max_cache", "error_cache", "default_cache"):
        if getattr(documents, name) <= 0:
            _fail(settings, f"cimd.{name}", f"expected a positive number of seconds, got {getattr(documents, name)}")
    if documents.max_bytes < 512:
        _fail(settings, "cimd.max_bytes", f"expected at least 512 bytes, got {documents.max_bytes}")
    if documents.allow_http_loopback and settings.profile != "development":
        _fail(settings, "cimd.allow_http_loopback", f"is for tests and rejected in the {settings.profile} profile")


def _check_registration(settings: Settings) -> None:
    registration = settings.registration
    if registration.unused_ttl < 0:
        _fail(settings, "registration.unused_ttl", f"expected 0 (keep) or more seconds, got {registration.unused_ttl}")
    if registration.max_per_address < 1:
        _fail(settings, "registration.max_per_address", f"expected at least 1, got {registration.max_per_address}")
    if registration.address_window <= 0:
        _fail(settings, "registration.address_window", f"expected a positive number of seconds, got {registration.address_window}")


def _check_metrics(settings: Settings) -> None:
    port = settings.metrics.port
    if port is None:
        return
    if not 0 < port < 65536:
        _fail(settings, "metrics.port", f"expected a port between 1 and 65535, got {port}")
    if port == settings.server.port:
        _fail(settings, "metrics.port", f"must differ from server.port ({port}); unset it to serve /metrics on the main listener")


def _check_http_url(settings: Settings, path: str, url: str, *, allow_query: bool = False) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        _fail(settings, path, f"expected an absolute http(s) URL, got {url!r}")
    if (parts.query and not allow_query) or parts.fragment:
        _fail(settings, path, f"must not carry a query or fragment, got {url!r}")
    if "@" in parts.netloc:
        _fail(settings, path, f"must not carry a user name or password, got {redact_userinfo(url)!r}")


def _check_clients(settings: Settings) -> None:
    seen: set[str] = set()
    for i, client in enumerate(settings.clients):
        path = f"clients[{i}]"
        if client.client_id in seen:
            _fail(settings, f"{path}.client_id", f"duplicate client_id {client.client_id!r}")
        seen.add(client.client_id)
        if not client.redirect_uris:
            _fail(settings, f"{path}.redirect_uris", "at least one redirect URI is required")
        method = client.token_endpoint_auth_method
        if method not in (None, "none", "client_secret_basic", "client_secret_post"):
            _fail(settings, f"{path}.token_endpoint_auth_method", f"unsupported method {method!r}")
        if method in ("client_secret_basic", "client_secret_post") and not client.client_secret_hash:
            _fail(settings, f"{path}.client_secret_hash", f"required for {method}")
        for name in ("client_uri", "logo_uri"):
            value = getattr(client, name)
            if value is not None and not value.startswith("https://"):
                _fail(settings, f"{path}.{name}", f"expected an https URL, got {value!r}")
        if client.scope:
            unknown = set(client.scope.split()) - set(settings.scopes)
            if unknown:
                _fail(settings, f"{path}.scope", f"scopes not in [scopes]: {', '.join(sorted(unknown))}")
