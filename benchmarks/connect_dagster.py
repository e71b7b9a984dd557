"""A Stripe Connect platform loaded by the Dagster fan-out into PostgreSQL: one run of every
account partition (a step per account under the multiprocess executor, then the transforms),
with 1, 2, 4 and 8 accounts at once; a first load and a load with nothing changed at each.

Usage (from the repository root):

    .venv/bin/python benchmarks/connect_dagster.py [--accounts 200] [--codes 500]
        [--latency-ms 150] [--key live|test] [--budget platform|per_account]
        [--at-once 1,2,4,8]

The emulator runs as a process of its own, as for benchmarks/connect_command.py (each connected
account N promotion codes and N/10 coupons and products; the platform's own account empty;
Stripe's rate limits for the key's mode). PostgreSQL is a `pgserver` of its own. The accounts
are registered as partitions once (as the sensor would); then, for each number of accounts at
once (STRIPE_PIPELINE_ACCOUNTS_AT_ONCE, the executor's max_concurrent), a fresh database and
dlt folder, and `dagster job execute -j stripe_incremental` with the schedule's tags (every
partition in one run), twice. Under the platform's one budget each account's process takes
1/N of Stripe's limits (fanout.rate_share), so N processes together stay within them.

Reported per run: wall time of `dagster job execute`, Stripe requests and 429s, and from the
run's events the mean time of an account's step (its load), the mean time from launching a
step's process to the step's start (Dagster's overhead per step), and the transforms' step.
Results: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from emulator_process import KEYS, ROOT, Emulator, launch_emulator, platform_arguments

DAGSTER = str(Path(sys.executable).parent / "dagster")
DEFINITIONS = "orchestration.dagster.definitions"
PARTITIONS = "stripe_accounts"
RUN_TIMEOUT = 3600


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = platform_arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--at-once", default="1,2,4,8", help="accounts at once, comma-separated")
    args: argparse.Namespace = parser.parse_args(argv)
    return args


def environment(args: argparse.Namespace, url: str, home: Path) -> dict[str, str]:
    """What every Dagster run here gets: the emulator, the key, every account, PostgreSQL."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SOURCES__", "DESTINATION__", "DLT_", "STRIPE_", "DAGSTER_"))
    }
    env.update(
        STRIPE_API_KEY=KEYS[args.key],
        SOURCES__STRIPE__API_BASE=url,
        SOURCES__STRIPE__ACCOUNTS="all",
        SOURCES__STRIPE__CONNECT_RATE_BUDGET=args.budget,
        STRIPE_PIPELINE_DESTINATION="postgres",
        DAGSTER_HOME=str(home),
        RUNTIME__DLTHUB_TELEMETRY="false",
    )
    return env


def register_accounts(env: dict[str, str]) -> list[str]:
    """The accounts as partitions, as the sensor adds them (in a process with `env`)."""
    script = (
        "import dagster as dg, json\n"
        "from stripe_promotions_pipeline.accounts import accounts_to_load\n"
        "from stripe_promotions_pipeline.config import PipelineConfig\n"
        "accounts = accounts_to_load(PipelineConfig.from_env())\n"
        "with dg.DagsterInstance.get() as instance:\n"
        f"    instance.add_dynamic_partitions({PARTITIONS!r}, accounts)\n"
        "print(json.dumps(accounts))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"registering the accounts failed: {done.stderr[-2000:]}")
    accounts: list[str] = json.loads(done.stdout.splitlines()[-1])
    return accounts


def run_job(env: dict[str, str], accounts: list[str]) -> float:
    """One run of every account partition (the hourly schedule's run); its wall time."""
    tags = {
        "dagster/asset_partition_range_start": accounts[0],
        "dagster/asset_partition_range_end": accounts[-1],
    }
    command = [DAGSTER, "job", "execute", "-m", DEFINITIONS, "-j", "stripe_incremental"]
    started = time.monotonic()
    done = subprocess.run(
        [*command, "--tags", json.dumps(tags)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"the run failed ({done.returncode}): {done.stderr[-3000:]}")
    return wall


def step_times(env: dict[str, str]) -> dict[str, float]:
    """From the newest run's events: mean account step, mean process start, transforms."""
    script = (
        "import dagster as dg, json\n"
        "with dg.DagsterInstance.get() as instance:\n"
        "    run = instance.get_runs(limit=1)[0]\n"
        "    events = [(e.timestamp, e.dagster_event.event_type_value, e.dagster_event.step_key)\n"
        "              for e in instance.all_logs(run.run_id) if e.dagster_event]\n"
        "print(json.dumps(events))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    events: list[tuple[float, str, str | None]] = json.loads(done.stdout.splitlines()[-1])
    steps: dict[str, dict[str, float]] = {}
    for timestamp, kind, step in events:
        if step:
            steps.setdefault(step, {})[kind] = timestamp
    loads = [s for key, s in steps.items() if "_account[" in key]
    current = [s for key, s in steps.items() if "current_state" in key]

    def mean(values: list[float]) -> float:
        return statistics.fmean(values) if values else float("nan")

    return {
        "account step s": mean([s["STEP_SUCCESS"] - s["STEP_START"] for s in loads]),
        "process start s": mean([s["STEP_START"] - s["STEP_WORKER_STARTING"] for s in loads]),
        "transforms s": mean([s["STEP_SUCCESS"] - s["STEP_START"] for s in current]),
    }


def create_database(socket_dir: str) -> str:
    """A fresh database on the benchmark's PostgreSQL; dlt's credentials for it."""
    import psycopg2

    name = f"bench_{uuid.uuid4().hex[:8]}"
    connection = psycopg2.connect(dbname="postgres", user="postgres", host=socket_dir)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    connection.close()
    return f"postgresql://postgres:x@localhost/{name}?host={socket_dir}"


def measure(
    args: argparse.Namespace, emulator: Emulator, env: dict[str, str], accounts: list[str]
) -> list[dict[str, Any]]:
    """A first load and a quiet load per number of accounts at once, on fresh storage."""
    from pgserver.postgres_server import get_server

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="connect-dagster-pg-") as pg_folder:
        server = get_server(Path(pg_folder), cleanup_mode="delete")
        socket_dir = str(server.get_postmaster_info().socket_dir)
        try:
            for at_once in [int(n) for n in args.at_once.split(",")]:
                run_env = {
                    **env,
                    "STRIPE_PIPELINE_ACCOUNTS_AT_ONCE": str(at_once),
                    "DESTINATION__POSTGRES__CREDENTIALS": create_database(socket_dir),
                    "DLT_DATA_DIR": tempfile.mkdtemp(prefix="connect-dagster-dlt-"),
                }
                for label in ("first load", "quiet load"):
                    emulator.clear_requests()
                    rejected = emulator.rejected()
                    wall = run_job(run_env, accounts)
                    row = {"at once": at_once, "run": label, "wall s": wall}
                    row["requests"] = emulator.api_requests()
                    row["429s"] = emulator.rejected() - rejected
                    row |= step_times(run_env)
                    rows.append(row)
                    print(format_row(row), flush=True)
        finally:
            server.cleanup()
    return rows


HEADER = (
    f"{'at once':>7}  {'run':<10}  {'wall s':>7}  {'requests':>8}  {'429s':>6}  "
    f"{'account step s':>14}  {'process start s':>15}  {'transforms s':>12}"
)


def format_row(row: dict[str, Any]) -> str:
    return (
        f"{row['at once']:>7}  {row['run']:<10}  {row['wall s']:>7.1f}  {row['requests']:>8,}  "
        f"{row['429s']:>6,}  {row['account step s']:>14.2f}  {row['process start s']:>15.2f}  "
        f"{row['transforms s']:>12.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    options = ["--connected-accounts", str(args.accounts), "--connected-seed", str(args.codes)]
    options += ["--latency-ms", str(args.latency_ms), "--rate-limit-connect-budget", args.budget]
    emulator = launch_emulator(options)
    try:
        with tempfile.TemporaryDirectory(prefix="connect-dagster-home-") as home:
            (Path(home) / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
            env = environment(args, emulator.url, Path(home))
            accounts = register_accounts(env)
            print(
                f"{args.accounts} connected accounts x ({args.codes} codes, {args.codes // 10} "
                f"coupons, {args.codes // 10} products) and the platform's own (empty), "
                f"{args.latency_ms:g} ms latency, {args.key} key, budget {args.budget}, "
                f"PostgreSQL; {len(accounts)} partitions (seeded in {emulator.seed_s:.1f} s)"
            )
            print(HEADER, flush=True)
            measure(args, emulator, env, accounts)
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
