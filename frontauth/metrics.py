"""Prometheus metrics: what the operations alerts in docs/alerts.yml watch.

Each application gets its own ``CollectorRegistry``, so tests that build many
applications in one process do not register the same metric twice. Label
values come from fixed sets (route templates, OAuth error codes, grant types,
driver operations), never from raw request input, so a client cannot create
new time series at will.

| metric | labels | counts |
|---|---|---|
| frontauth_auth_failures_total | endpoint, reason | OAuth errors returned, and failed sign-ins |
| frontauth_tokens_issued_total | grant_type | token responses (200) of the token endpoint |
| frontauth_refresh_grants_total | result | refresh_token grant requests, issued or rejected |
| frontauth_jwks_fetch_errors_total | provider | failed fetches of an upstream JWKS |
| frontauth_jwks_fetch_retries_total | provider | upstream JWKS fetches made after a failed one |
| frontauth_storage_errors_total | driver, operation | StorageUnavailable seen by the error handler or /readyz |
| frontauth_token_request_duration_seconds | grant_type | token endpoint latency, histogram |
| frontauth_rate_limited_requests_total | endpoint | requests rejected with 429 by the rate limiter |
"""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from frontauth.storage import StorageUnavailable


GRANT_TYPES = ("authorization_code", "refresh_token")
# Every operation of frontauth.storage.Driver, declared at 0 for the open driver.
STORAGE_OPERATIONS = ("get", "set", "set_if_absent", "take", "swap", "delete", "ttl", "hit", "ping")
# Buckets in seconds; 0.5 s is the latency alert's threshold, so it is a bucket bound.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Set by the token endpoint once it has parsed the grant type, for the labels below.
GRANT_TYPE = web.RequestKey("grant_type", str)


class Metrics:
    """The application's metrics and the registry that exposes them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.auth_failures = Counter(
            "frontauth_auth_failures",
            "Requests rejected with an OAuth error, and failed sign-ins, by endpoint and error code.",
            ["endpoint", "reason"],
            registry=registry,
        )

        self.tokens_issued = Counter(
            "frontauth_tokens_issued", "Token responses sent, by grant type.", ["grant_type"], registry=registry
        )
        self.refresh_grants = Counter(
            "frontauth_refresh_grants",
            "refresh_token grant requests, by result (issued or rejected).",
            ["result"],
            registry=registry,
        )

        self.jwks_fetch_errors = Counter(
            "frontauth_jwks_fetch_errors",
            "Failed fetches of an upstream identity provider's JWKS, by provider.",
            ["provider"],
            registry=registry,
        )
        self.jwks_fetch_retries = Counter(
            "frontauth_jwks_fetch_retries",
            "Fetches of an upstream identity provider's JWKS made after a failed one, by provider.",
            ["provider"],
            registry=registry,
        )
        self.storage_errors = Counter(
            "frontauth_storage_errors",
            "Storage operations that failed to reach the backend, by driver and operation.",
            ["driver", "operation"],
            registry=registry,
        )

        self.token_latency = Histogram(
            "frontauth_token_request_duration_seconds",
            "Time to answer a token endpoint request, by grant type.",
            ["grant_type"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.rate_limited = Counter(
            "frontauth_rate_limited_requests",
            "Requests answered 429 by the rate limiter, by endpoint.",
            ["endpoint"],
            registry=registry,
        )

        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        # Series that exist from start-up at 0, so that increase() counts their first event.
        for grant_type in GRANT_TYPES:
            self.tokens_issued.labels(grant_type)
        for result in ("issued", "rejected"):
            self.refresh_grants.labels(result)
        # The series every token request touches, looked up once: labels()
        # takes a lock and hashes the label values on each call.
        self.token_latency_by_grant = {name: self.token_latency.labels(name) for name in (*GRANT_TYPES, "unknown")}
        self.tokens_issued_by_grant = {name: self.tokens_issued.labels(name) for name in GRANT_TYPES}
        self.refresh_issued = self.refresh_grants.labels("issued")
        self.refresh_rejected = self.refresh_grants.labels("rejected")

    def declare_storage(self, driver: str) -> None:
        """Create the storage error series of ``driver`` at 0."""
        for operation in STORAGE_OPERATIONS:
            self.storage_errors.labels(driver, operation)

    def declare_jwks_provider(self, provider: str) -> None:
        """Create the JWKS fetch error and retry series of an upstream provider at 0."""
        self.jwks_fetch_errors.labels(provider)
        self.jwks_fetch_retries.labels(provider)

    def count_storage_error(self, exc: StorageUnavailable) -> None:
        self.storage_errors.labels(exc.driver, exc.operation).inc()

    def count_auth_failure(self, request: web.Request, reason: str) -> None:
        self.auth_failures.labels(endpoint_label(request), reason).inc()

    def exposition(self) -> bytes:
        """Return the registry in the Prometheus text format."""
        return generate_latest(self.registry)


METRICS = web.AppKey("frontauth_metrics", Metrics)


def endpoint_label(request: web.Request) -> str:
    """Return the route template of a request, or "unmatched", never the raw path."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    if resource is None:
        return "unmatched"
    return resource.canonical


def request_metrics(request: web.Request) -> Metrics | None:
    """Return the application's metrics, or None when metrics are off."""
    return request.app.get(METRICS)


# The paths whose responses observe_response() records.
OBSERVED_PATHS = frozenset({"/oauth/token", "/oauth/login"})


def observe_response(metrics: Metrics, request: web.Request, response: web.StreamResponse, started: float) -> None:
    """Time a token request, and count issued tokens, refresh grants and failed sign-ins.

    The caller passes every request to OBSERVED_PATHS with its final
    response, including rendered errors, and the perf_counter() value taken
    when the request started.
    """
    if request.path == "/oauth/login":
        # NOTE: the sign-in handler responds to a wrong password with its page
        # and status 401 instead of raising, so the status is what marks a failure.
        if request.method == "POST" and response.status == 401:
            metrics.count_auth_failure(request, "invalid_credentials")
        return
    grant_type = request.get(GRANT_TYPE, "unknown")
    metrics.token_latency_by_grant[grant_type].observe(time.perf_counter() - started)
    if response.status == 200 and grant_type in GRANT_TYPES:
        metrics.tokens_issued_by_grant[grant_type].inc()
    if grant_type == "refresh_token":
        (metrics.refresh_issued if response.status == 200 else metrics.refresh_rejected).inc()


async def metrics_endpoint(request: web.Request) -> web.Response:
    """Serve the Prometheus exposition of this application's registry."""
    return web.Response(body=request.app[METRICS].exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def metrics_app(metrics: Metrics) -> web.Application:
    """Build the application of the separate metrics listener (``metrics.port``)."""
    app = web.Application()
    app[METRICS] = metrics
    app.router.add_get("/metrics", metrics_endpoint)
    return app
