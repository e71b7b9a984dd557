"""A Stripe Connect platform loaded by the command in one process: a first load and a load
with nothing changed, of the platform and every connected account (`--all-accounts`).

Usage (from the repository root):

    .venv/bin/python benchmarks/connect_command.py [--accounts 200] [--codes 500]
        [--latency-ms 150] [--key live|test] [--budget platform|per_account]
        [--destination duckdb|postgres] [--quiet-runs 1]

The emulator runs as a process of its own: `--connected-accounts A --connected-seed N` gives
each connected account N promotion codes and N/10 coupons and products (the platform's own
account is empty), with Stripe's rate limits for the key's mode, and
`--rate-limit-connect-budget` (whose limits a request for a connected account counts in). The
connector is told the same (`SOURCES__STRIPE__CONNECT_RATE_BUDGET`). PostgreSQL comes from
`DESTINATION__POSTGRES__CREDENTIALS`.

The floor is the least time Stripe's limits allow: under one shared budget, the requests of
the busiest operation / 25 per second or all requests / the account's rate, whichever is
longer; under per-account budgets every account has its own, so the floor is the busiest
account's (a few round trips): what is left is latency and how many accounts run at once.
Results: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emulator_process import (
    ACCOUNT_RATE,
    KEYS,
    OPERATION_RATE,
    ROOT,
    launch_emulator,
    platform_arguments,
)

COMMAND = [sys.executable, str(ROOT / "pipelines" / "stripe_pipeline.py")]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = platform_arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--destination", default="duckdb")
    parser.add_argument("--quiet-runs", type=int, default=1, help="loads with nothing changed")
    args: argparse.Namespace = parser.parse_args(argv)
    return args


def requests_per_account(codes: int) -> dict[str, int]:
    """Requests of one account's first load, by operation: the events clock, then a page per
    100 objects of each type (at least one)."""
    small = max(1, math.ceil(codes / 10 / 100))
    return {
        "GET /v1/events": 1,
        "GET /v1/promotion_codes": max(1, math.ceil(codes / 100)),
        "GET /v1/coupons": small,
        "GET /v1/products": small,
    }


def floor_seconds(args: argparse.Namespace, per_account: dict[str, int]) -> float:
    """The least time Stripe's limits allow for requests of this shape in every account."""
    accounts = args.accounts + 1  # and the platform's own (empty) account
    if args.budget == "per_account":
        return 0.0
    busiest = max(per_account.values()) * accounts / OPERATION_RATE
    return float(max(busiest, sum(per_account.values()) * accounts / ACCOUNT_RATE[args.key]))


def run(args: argparse.Namespace, url: str, workdir: Path) -> tuple[float, str]:
    """One `--all-accounts` run of the command; its wall time and summary."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__")}
    env.update(
        STRIPE_API_KEY=KEYS[args.key],
        DLT_DATA_DIR=str(workdir / "dlt"),
        RUNTIME__DLTHUB_TELEMETRY="false",
        SOURCES__STRIPE__CONNECT_RATE_BUDGET=args.budget,
    )
    started = time.monotonic()
    done = subprocess.run(
        [*COMMAND, "--api-base", url, "--destination", args.destination, "--all-accounts"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"the run failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, done.stdout


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    options = ["--connected-accounts", str(args.accounts), "--connected-seed", str(args.codes)]
    options += ["--latency-ms", str(args.latency_ms), "--rate-limit-connect-budget", args.budget]
    emulator = launch_emulator(options)
    shape = requests_per_account(args.codes)
    try:
        with tempfile.TemporaryDirectory(prefix="connect-bench-") as folder:
            workdir = Path(folder)
            print(
                f"{args.accounts} connected accounts x ({args.codes} codes, {args.codes // 10} "
                f"coupons, {args.codes // 10} products), {args.latency_ms:g} ms latency, "
                f"{args.key} key, budget {args.budget}, {args.destination} "
                f"(seeded in {emulator.seed_s:.1f} s)"
            )
            print(
                f"floor of a first load under Stripe's limits: {floor_seconds(args, shape):.1f} s"
            )
            quiet = requests_per_account(0)  # one request of each operation
            print(f"floor of a quiet load: {floor_seconds(args, quiet):.1f} s")
            labels = ["first load", *(f"quiet load {n + 1}" for n in range(args.quiet_runs))]
            for label in labels:
                emulator.clear_requests()
                wall, summary = run(args, emulator.url, workdir)
                counts = emulator.get("/_emulator/requests")
                by_account = counts["by_account"].values()
                per = sum(by_account) / max(1, len(by_account))
                print(
                    f"{label}: {wall:.1f} s, {counts['total']:,} requests "
                    f"({per:.1f} per connected account), {emulator.rejected():,} answered 429"
                )
                print("  " + summary.splitlines()[0])
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
