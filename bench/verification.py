"""Resource-side verification with ``frontauth.resource.BearerVerifier``, in process.

The measurement runs in a process of its own (``python -m bench.verification``),
which imports the same frontauth as the servers under test and runs the
verifier in its own event loop on one core, with no HTTP per token. Tokens are
minted there by frontauth's own ``AccessTokenMinter`` with the key the
benchmark gave the server, so they are the tokens the server would issue.
Every verification requires the scope ``mcp``. There are four modes:

- ``cold``: a new verifier per token, which discovers the server's metadata and
  fetches its key set over loopback before it verifies;
- ``cached key set, distinct tokens``: one verifier whose key set is loaded,
  each token verified once, so every verification misses the token cache and
  checks the signature;
- ``token cache, repeated tokens``: one verifier and 64 tokens verified over
  and over, so after the first round every verification is a token cache hit.
  The run fails unless all of them were hits;
- ``no token cache, repeated tokens``: the same with ``token_cache_size=0``,
  for comparison.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
import typing

import aiohttp
import attrs

from bench.loadgen import Spread

if typing.TYPE_CHECKING:
    from bench.source import FrontauthSource

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


class VerificationFailed(RuntimeError):
    """The verification process failed; the message carries the end of its output."""


def mint_tokens(issuer: str, sign_key: dict[str, str], count: int) -> list[str]:
    """Mint access tokens as the server would, signed by the benchmark's key."""
    from frontauth import config
    from frontauth import keys as signing_keys
    from frontauth.tokens import AccessTokenMinter

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


async def _verify_for(verifier: typing.Any, tokens: typing.Sequence[str], seconds: float, cycle: bool) -> tuple[int, float]:
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
    """Measure the four modes against the frontauth server at ``issuer``; ``pool`` caps distinct tokens per run."""
    from frontauth.resource import BearerVerifier

    audience = issuer + "/mcp"
    tokens = mint_tokens(issuer, sign_key, pool + REPEATED_POOL)
    distinct, repeated = tokens[:pool], tokens[pool:]
    modes = ("cold", "cached key set, distinct tokens", "token cache, repeated tokens", "no token cache, repeated tokens")
    results: dict[str, list[tuple[int, float]]] = {mode: [] for mode in modes}
    async with aiohttp.ClientSession() as session:
        for _ in range(runs):
            results["cold"].append(await _cold(issuer, audience, session, distinct, seconds))
            async with BearerVerifier(issuer, audience, session=session, required_scopes=["mcp"]) as verifier:
                await verifier.verify(repeated[0])  # loads the key set
                results["cached key set, distinct tokens"].append(await _verify_for(verifier, distinct, seconds, cycle=False))
            async with BearerVerifier(issuer, audience, session=session, required_scopes=["mcp"]) as verifier:
                for token in repeated:
                    await verifier.verify(token)
                misses = verifier.token_cache.misses
                count, elapsed = await _verify_for(verifier, repeated, seconds, cycle=True)
                if verifier.token_cache.misses != misses or verifier.token_cache.hits < count:
                    raise RuntimeError(f"token cache: {verifier.token_cache.misses - misses} misses in {count} "
                                       "verifications of tokens verified before; every one should be a hit")
                results["token cache, repeated tokens"].append((count, elapsed))
            async with BearerVerifier(issuer, audience, session=session, required_scopes=["mcp"],
                                      token_cache_size=0) as verifier:
                await verifier.verify(repeated[0])
                results["no token cache, repeated tokens"].append(await _verify_for(verifier, repeated, seconds, cycle=True))
    return [
        VerificationResult(mode, tuple(n / s for n, s in values), tuple(n for n, _ in values))
        for mode, values in results.items()
    ]


async def _cold(issuer: str, audience: str, session: aiohttp.ClientSession, tokens: typing.Sequence[str],
                seconds: float) -> tuple[int, float]:
    from frontauth.resource import BearerVerifier

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


async def measure_in_subprocess(source: FrontauthSource, issuer: str, sign_key: dict[str, str], *, runs: int,
                                seconds: float, pool: int, workdir: str) -> list[VerificationResult]:
    """Run :func:`measure` in ``python -m bench.verification`` with the frontauth of ``source``."""
    request = json.dumps({"issuer": issuer, "sign_key": sign_key, "runs": runs, "seconds": seconds, "pool": pool})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.verification", cwd=workdir, env=source.env(),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    # Minting the pool and three runs of four modes, with room for a slow machine.
    limit = 120.0 + runs * 4 * (seconds + 5.0)
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(request.encode()), limit)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise VerificationFailed(f"the verification process did not finish within {limit:.0f} s") from None
    if process.returncode != 0:
        raise VerificationFailed(f"the verification process exited with {process.returncode}: "
                                 f"{stderr.decode(errors='replace')[-800:]}")
    return [VerificationResult(item["mode"], tuple(item["rates"]), tuple(item["counts"]))
            for item in json.loads(stdout)]


def main() -> None:
    """Read the request as JSON on stdin, measure, and print the results as JSON."""
    request = json.load(sys.stdin)
    results = asyncio.run(measure(request["issuer"], request["sign_key"], runs=request["runs"],
                                  seconds=request["seconds"], pool=request["pool"]))
    json.dump([{"mode": r.mode, "rates": r.rates, "counts": r.counts} for r in results], sys.stdout)


if __name__ == "__main__":
    main()
