"""Resource-side verification with ``frontauth.resource.BearerVerifier``, in this process.

Tokens are minted here by frontauth's own ``AccessTokenMinter`` with the key
the benchmark gave the server, so they are the tokens the server would issue.
Three modes, each on one core (one event loop, nothing else running):

- ``cold``: a new verifier per token, which discovers the server's metadata and
  fetches its key set over loopback before it verifies;
- ``cached key set, distinct tokens``: one verifier whose key set is loaded,
  each token verified once;
- ``cached key set, repeated tokens``: one verifier and 64 tokens verified
  over and over, the case a verified-token cache would serve.
"""

from __future__ import annotations

import json
import tempfile
import time
import typing

import aiohttp
import attrs

from bench.loadgen import Spread
from frontauth import config
from frontauth import keys as signing_keys
from frontauth.resource import BearerVerifier
from frontauth.tokens import AccessTokenMinter

REPEATED_POOL = 64
COLD_MAX = 2000


@attrs.frozen
class VerificationResult:
    mode: str
    rates: tuple[float, ...]
    counts: tuple[int, ...]

    @property
    def spread(self) -> Spread:
        return Spread.of(self.rates)


def mint_tokens(issuer: str, sign_key: dict[str, str], count: int) -> list[str]:
    """Mint access tokens as the server would, signed by the benchmark's key."""
    with tempfile.TemporaryDirectory() as state_dir:
        settings = config.load(
            environ={"JWT_SIGNING_KEY": json.dumps(sign_key)},
            overrides={"public_url": issuer, "server.state_dir": state_dir},
        )
        keys = signing_keys.load(settings)
    minter = AccessTokenMinter(keys, settings.issuer, settings.access_ttl)
    audience = settings.audiences[0]
    return [
        minter.mint(subject=f"user{i}@example.com", client_id="bench-client", scope="mcp", audience=audience,
                    family_id=f"family{i}", auth_time=int(time.time())).token
        for i in range(count)
    ]


async def _verify_for(verifier: BearerVerifier, tokens: typing.Sequence[str], seconds: float, cycle: bool) -> tuple[int, float]:
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    index = 0
    while time.perf_counter() < deadline:
        if index == len(tokens):
            if not cycle:
                break
            index = 0
        await verifier.verify(tokens[index])
        index += 1
        count += 1
    return count, time.perf_counter() - started


async def measure(issuer: str, sign_key: dict[str, str], *, runs: int, seconds: float, pool: int) -> list[VerificationResult]:
    """Measure the three modes against the frontauth server at ``issuer``; ``pool`` caps distinct tokens per run."""
    audience = issuer + "/mcp"
    tokens = mint_tokens(issuer, sign_key, pool + REPEATED_POOL)
    distinct, repeated = tokens[:pool], tokens[pool:]
    results: dict[str, list[tuple[int, float]]] = {"cold": [], "cached key set, distinct tokens": [],
                                                   "cached key set, repeated tokens": []}
    async with aiohttp.ClientSession() as session:
        for _ in range(runs):
            results["cold"].append(await _cold(issuer, audience, session, distinct, seconds))
            async with BearerVerifier(issuer, audience, session=session, required_scopes=["mcp"]) as verifier:
                await verifier.verify(repeated[0])  # loads the key set
                results["cached key set, distinct tokens"].append(await _verify_for(verifier, distinct, seconds, cycle=False))
            async with BearerVerifier(issuer, audience, session=session, required_scopes=["mcp"]) as verifier:
                await verifier.verify(repeated[0])
                results["cached key set, repeated tokens"].append(await _verify_for(verifier, repeated, seconds, cycle=True))
    return [
        VerificationResult(mode, tuple(n / s for n, s in values), tuple(n for n, _ in values))
        for mode, values in results.items()
    ]


async def _cold(issuer: str, audience: str, session: aiohttp.ClientSession, tokens: typing.Sequence[str],
                seconds: float) -> tuple[int, float]:
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    for token in tokens[:COLD_MAX]:
        if time.perf_counter() >= deadline:
            break
        async with BearerVerifier(issuer, audience, session=session, required_scopes=["mcp"]) as verifier:
            await verifier.verify(token)
        count += 1
    return count, time.perf_counter() - started
