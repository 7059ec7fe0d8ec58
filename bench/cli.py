"""Command line of the benchmark: ``python -m bench [--peers] [--quick] ...``.

It measures frontauth (memory, Redis and SQLite drivers) and, with ``--peers``, the
peer servers it installs into bench/.cache, then prints the Markdown report and
writes it to bench/results/. Every server runs on loopback, every run is
bounded in time and in requests, and the whole invocation stops by itself
after ``--deadline`` seconds at the latest.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
import typing

from joserfc.jwk import ECKey

from bench import report, versions
from bench.install import BENCH_DIR
from bench.profiling import py_spy_binary
from bench import source as frontauth_source
from bench.runner import Plan, log, run_plan
from bench.targets import FRONTAUTH_DEFAULT, PEERS_DEFAULT, TARGETS, Context

RESULTS_DIR = os.path.join(BENCH_DIR, "results")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", action="store_true",
                        help="also install and measure node-oidc-provider, FastMCP and the bare aiohttp handler")
    parser.add_argument("--targets", help=f"comma-separated targets to measure, from: {', '.join(TARGETS)}")
    parser.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1",
                        help="one short run at concurrency 16, to check that everything works (or BENCH_QUICK=1)")
    parser.add_argument("--concurrency", type=_int_list,
                        help="comma-separated numbers of concurrent workers (default 16,64)")
    parser.add_argument("--runs", type=int, help="measured runs per cell (default 3)")
    parser.add_argument("--warmup", type=float, help="seconds of load before each measured window (default 2)")
    parser.add_argument("--window", type=float, help="seconds of each measured window (default 8)")
    parser.add_argument("--max-requests", type=int, default=500_000,
                        help="requests after which a run's window ends early (default 500000)")
    parser.add_argument("--profile", choices=("auto", "yes", "no"), default="auto",
                        help="sample frontauth with py-spy during an extra, unmeasured flow and refresh window; "
                             "auto does so when py-spy is installed (default auto)")
    parser.add_argument("--quiet-budget", type=float,
                        help="seconds in all to wait, before measured runs, for other processes on the machine "
                             "to use less than a quarter of a core (default 180; 0 with --quick)")
    parser.add_argument("--deadline", type=float, default=1800.0,
                        help="seconds after which the whole benchmark is stopped (default 1800)")
    parser.add_argument("--frontauth-from", metavar="REV",
                        help="measure this git revision of frontauth (for example HEAD) instead of the installed "
                             "package, which follows uncommitted edits of the working tree")
    parser.add_argument("--output-dir", default=RESULTS_DIR, help="folder for the Markdown report")
    return parser


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def make_plan(args: argparse.Namespace) -> Plan:
    if args.targets:
        keys = [key.strip() for key in args.targets.split(",") if key.strip()]
        unknown = [key for key in keys if key not in TARGETS]
        if unknown:
            raise SystemExit(f"unknown target {', '.join(unknown)}; expected some of {', '.join(TARGETS)}")
    else:
        keys = list(FRONTAUTH_DEFAULT) + (list(PEERS_DEFAULT) if args.peers else [])
    quick = args.quick
    warmup = 1.0 if quick else 2.0
    if args.warmup is not None:
        warmup = args.warmup
    window = 3.0 if quick else 8.0
    if args.window is not None:
        window = args.window
    concurrencies = args.concurrency or ((16,) if quick else (16, 64))
    quiet_budget = 0.0 if quick else 180.0
    if args.quiet_budget is not None:
        quiet_budget = args.quiet_budget
    profile = args.profile == "yes" or (args.profile == "auto" and py_spy_binary() is not None)
    return Plan(
        targets=tuple(TARGETS[key] for key in keys),
        concurrencies=concurrencies,
        runs=args.runs or (1 if quick else 3),
        warmup=warmup,
        window=window,
        max_requests=args.max_requests,
        verification_seconds=1.0 if quick else 3.0,
        verification_pool=1500 if quick else 6000,
        profile=profile,
        quick=quick,
        quiet_budget=quiet_budget,
    )


def _signing_key() -> dict[str, str]:
    """Generate a private ES256 JWK with kid, alg and use, the form frontauth's keys.sign_key takes."""
    key = ECKey.generate_key("P-256", private=True)
    jwk = typing.cast(dict[str, str], key.as_dict(private=True))
    jwk.update(kid=key.thumbprint(), alg="ES256", use="sig")
    return jwk


def _install_event_loop() -> str:
    """Run the load driver on uvloop when the bench extra is installed; return the loop's name."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def main(argv: typing.Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    plan = make_plan(args)
    loop_name = _install_event_loop()
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        source = frontauth_source.snapshot(args.frontauth_from) if args.frontauth_from else frontauth_source.installed()
    except frontauth_source.SourceUnavailable as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    # One signing key for the whole invocation: the servers sign with it and the
    # verification scenario mints tokens with it.
    context = Context(sign_key=_signing_key(), frontauth=source)
    log(f"frontauth: {source.label}")
    log(f"targets: {', '.join(t.key for t in plan.targets)}; concurrency {plan.concurrencies}; "
        f"{plan.runs} run(s) of {plan.warmup:g} s + {plan.window:g} s; load driver on {loop_name}")

    async def bounded() -> typing.Any:
        return await asyncio.wait_for(run_plan(plan, context), args.deadline)

    try:
        outcome = asyncio.run(bounded())
    except asyncio.TimeoutError:
        print(f"bench: stopped after the {args.deadline:.0f} s deadline", file=sys.stderr)
        return 1
    found = versions.collect(peers=any(t.peer for t in plan.targets))
    own = found["frontauth, the load driver and the bare aiohttp peer"]
    own["frontauth measured"] = source.label
    own["load driver event loop"] = loop_name
    text = report.render(outcome, found, versions.machine(), command)
    print()
    print(text)
    os.makedirs(args.output_dir, exist_ok=True)
    kind = "frontauth"
    if plan.quick:
        kind = "quick"
    elif any(t.peer for t in plan.targets):
        kind = "peers"
    path = os.path.join(args.output_dir, f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}.md")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    log(f"report written to {os.path.relpath(path)}")
    return 0
