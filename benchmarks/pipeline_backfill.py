"""A backfill through the whole pipeline against a seeded emulator, then a run with no changes.

Usage (from the repository root):

    .venv/bin/python benchmarks/pipeline_backfill.py [--codes 100000] [--coupons 10000]
        [--products 10000] [--latency-ms 150] [--key live|test] [--no-limits]
        [--account-rate-limit R] [--operation-rate-limit R] [--max-rps R]
        [--max-rps-per-operation R] [--destination duckdb] [--workdir DIR] [--no-pin]
        [--quiet-runs N] [--changes N,N...]
        [--install plain|full] [--airflow-secrets] [--duckdb-threads N]
        [--duckdb-memory-limit SIZE] [--arrow-memory-pool POOL] [--timeline] [--json]

Results and their conditions: benchmarks/RESULTS.md. Each run also prints "core speed": the
CPU ms of a fixed JSON-and-dict workload on the pipeline's core just before the run, so runs
on a VM whose speed drifts can be compared.

Three processes, so each is measured on its own:

* the emulator, `python -m stripe_emulator --port 0 --seed N --coupons C --products P
  --latency-ms X` with Stripe's rate limits (or the ones asked for, or none) (its URL is read
  from its first line of output);
* the pipeline: `run_sync(SyncRequest(), PipelineConfig(...))` (extract, normalize, load,
  transforms) in a child process of its own, so its peak memory is that process's maximum
  resident set (`getrusage`), and its CPU time is its own; more children then run again with nothing
  changed in Stripe (the quiet runs, `--quiet-runs`, default 1), then, for each N of
  `--changes`, after N promotion codes' metadata changed (through the SDK: N events);
* this process, which starts both, reads the emulator's request and 429 counts
  (`GET /_emulator/requests`, `GET /_emulator/rate_limits`) and prints the table.

With two or more cores the emulator is pinned to the last core and the pipeline to the
others (`--no-pin` leaves both free), so "one core" for the pipeline means one core.

The key is a live one by default (Stripe allows it 100 requests/s for the account, 25 for each
operation; a test key 25 for the account). The connector's limits are its defaults for that
key unless `--max-rps` / `--max-rps-per-operation` say otherwise (passed as
`SOURCES__STRIPE__MAX_REQUESTS_PER_SECOND[_PER_OPERATION]`); with `--no-limits` the emulator
answers no 429 and the connector aims at 10,000 requests/s: the CPU-bound measurement.

The rate-limit floor is the least time Stripe's limits allow the backfill: the pages the
account needs (ceil(objects / 100) per type) divided by the account's requests per second,
or the pages of the busiest list divided by its operation's limit, whichever is longer (each
list is one operation: 1,000 pages of promotion codes take at least 40 s at 25/s, however
many requests/s the account may make). Phase times come
from the runner's phases (extracting, normalizing, loading, transforming); "extract, API" is
the time from the first to the last API answer. The destination is DuckDB in a temporary
folder unless `--destination` and dlt's usual environment variables say otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import psutil
from emulator_process import KEYS, Emulator, launch_emulator

ROOT = Path(__file__).resolve().parent.parent
STRIPE_LIMITS = {"live": 100.0, "test": 25.0}  # account-wide requests/s by key mode
OPERATION_LIMIT = 25.0
URL_LINE = re.compile(rb"http://127\.0\.0\.1:\d+")
PHASES = ("extracting", "normalizing", "loading", "transforming")
SEED_TIMEOUT = 600.0  # seconds for the emulator to seed (1,000,000 codes take about 35)
RUN_TIMEOUT = 3600.0
UNLIMITED_RPS = 10_000.0
# Installed here only by the optional extras (notebooks, orchestration), imported by dlt and
# pyarrow when present: pandas (pyarrow, on the first `pa.array`), SQLAlchemy (dlt, to parse
# the DuckDB path), Airflow (dlt's Airflow secrets provider), Dagster.
EXTRAS_ONLY = ["pandas", "sqlalchemy", "airflow", "dagster", "dagster_dlt"]


# -- the child: one pipeline run, measured from inside ------------------------------------------
def calibrate() -> float:
    """CPU ms of a fixed workload (JSON and dict work, like the connector's), on this core now.

    The VM this was measured on ran the same backfill in 4.5 to 7.5 CPU seconds within an
    hour; this figure, taken just before each run, shows how fast the core was at the time.
    """
    page = [{"id": f"promo_{i}", "n": i, "metadata": {"k": str(i)}} for i in range(100)]
    body = orjson.dumps({"data": page})
    started = time.process_time()
    for _ in range(2000):
        [obj.get("n") for obj in orjson.loads(body)["data"]]
    return (time.process_time() - started) * 1000


def child(config: dict[str, Any]) -> dict[str, Any]:
    """Run the pipeline once; phase times, per-phase peak memory, requests, rows."""
    os.environ.update(config["env"])
    sys.path.insert(0, str(ROOT))
    blocked = tuple(config.get("blocked", ()))
    if blocked:

        class Blocked:
            """Packages only the optional extras install, hidden as in a plain install."""

            def find_spec(self, name: str, *args: Any) -> None:
                if name.split(".")[0] in blocked:
                    raise ModuleNotFoundError(f"No module named {name!r} (hidden)", name=name)

        sys.meta_path.insert(0, Blocked())
    started = time.monotonic()
    import stripe_promotions_pipeline.runner as runner
    from stripe_promotions import client as stripe_client
    from stripe_promotions_pipeline import PipelineConfig, SyncRequest, run_sync
    from stripe_promotions_pipeline.progress import Progress

    imported = time.monotonic()
    phases: dict[str, list[float]] = {}
    peaks: dict[str, int] = {}
    current = ["setup"]
    me = psutil.Process()

    class TimedProgress(Progress):
        """The runner's progress display, also timing each phase (time and CPU)."""

        @contextlib.contextmanager
        def step(self, phase: str) -> Iterator[None]:
            current[0] = phase
            cpu = me.cpu_times()
            began = time.monotonic()
            with super().step(phase):
                yield
            after = me.cpu_times()
            used = after.user + after.system - cpu.user - cpu.system
            phases[phase] = [time.monotonic() - began, used]

    setattr(runner, "Progress", TimedProgress)  # noqa: B010  (the runner makes its own)

    answers: list[float] = []  # when each API answer arrived
    original_get = stripe_client.StripeApi.get

    def timed_get(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return original_get(self, *args, **kwargs)
        finally:
            answers.append(time.monotonic())

    stripe_client.StripeApi.get = timed_get  # type: ignore[method-assign]

    stop = threading.Event()

    memory: list[tuple[float, str, int]] = []  # (seconds into the run, phase, RSS MiB)

    def sample() -> None:
        ticks = 0
        while not stop.wait(0.02):
            rss = me.memory_info().rss
            phase = current[0]
            peaks[phase] = max(peaks.get(phase, 0), rss)
            ticks += 1
            if ticks % 10 == 0:
                memory.append((round(time.monotonic() - began, 1), phase, rss >> 20))

    began = time.monotonic()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    settings = PipelineConfig(
        destination=config["destination"],
        api_base=config["api_base"],
        pipelines_dir=config["pipelines_dir"],
        duckdb_file=config["duckdb_file"],
        progress=False,
    )
    calibration = calibrate()
    cpu = me.cpu_times()
    began = time.monotonic()
    result = run_sync(SyncRequest(), settings)
    wall = time.monotonic() - began
    after = me.cpu_times()
    stop.set()
    sampler.join()
    api = result.stats.apis[0] if result.stats.apis else None
    return {
        "startup_s": imported - started,
        "calibration_ms": calibration,
        "run_s": wall,
        "run_cpu_s": after.user + after.system - cpu.user - cpu.system,
        "phases": phases,
        "api_s": answers[-1] - answers[0] if answers else 0.0,
        "answers": [round(t - began, 3) for t in answers],
        "requests": result.stats.requests,
        "retries": result.stats.retries,
        "workers": api.max_workers if api else 0,
        "rate": api.rate if api else 0.0,
        "rows": dict(result.stats.rows),
        "tables": {t.table: t.rows for t in result.tables},
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "phase_peaks": peaks,
        "memory": memory,
    }


# -- the parent: emulator, children, table -------------------------------------------------------
def start_emulator(args: argparse.Namespace) -> Emulator:
    """A seeded emulator with the asked latency and rate limit."""
    command = ["--seed", str(args.codes)]
    command += ["--coupons", str(args.coupons), "--products", str(args.products)]
    command += ["--latency-ms", str(args.latency_ms)]
    if args.no_limits:
        command += ["--no-rate-limits"]
    else:
        command += [f"--{args.key}-rate-limit", str(account_limit(args))]
        command += ["--operation-rate-limit", str(args.operation_rate_limit)]
    return launch_emulator(command)


class RunFailed(Exception):
    """A pipeline child exited non-zero (its traceback is on stderr)."""


def run_child(config: dict[str, Any], cores: set[int] | None) -> tuple[dict[str, Any], float]:
    """One pipeline run in its own process; its report and the process's wall time."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        config = {**config, "out": out.name}
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, __file__, "--child", json.dumps(config)], cwd=config["cwd"]
        )
        if cores:
            os.sched_setaffinity(process.pid, cores)
        timer = threading.Timer(RUN_TIMEOUT, process.kill)
        timer.start()
        _, status, usage = os.wait4(process.pid, 0)  # the child's own peak, even if it fails
        timer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            peak = usage.ru_maxrss * 1024 / 2**20
            raise RunFailed(f"exit {process.returncode}, peak RSS {peak:.0f} MiB")
        wall = time.monotonic() - started
        return json.load(out), wall


def floor_pages(args: argparse.Namespace) -> list[int]:
    """Pages each list of a backfill of this account needs at 100 objects a page."""
    return [math.ceil(n / 100) for n in (args.codes, args.coupons, args.products)]


def account_limit(args: argparse.Namespace) -> float:
    """The account-wide requests/s the emulator allows the key."""
    return float(args.account_rate_limit or STRIPE_LIMITS[args.key])


def floor_seconds(args: argparse.Namespace) -> tuple[float, str] | None:
    """The least time Stripe's limits allow the backfill, and how it was worked out."""
    if args.no_limits:
        return None
    pages = floor_pages(args)
    account = sum(pages) / account_limit(args)
    busiest = max(pages) / args.operation_rate_limit
    how = (
        f"max({sum(pages):,} pages / {account_limit(args):g} per s, "
        f"{max(pages):,} pages of the busiest list / {args.operation_rate_limit:g} per s) "
    )
    return max(account, busiest), how


def report(
    args: argparse.Namespace,
    emulator: Emulator,
    runs: list[tuple[str, dict[str, Any], float, int, float, int]],
    load: tuple[float, float, float],
) -> None:
    """The table: one column per run."""
    pages = sum(floor_pages(args))
    objects = args.codes + args.coupons + args.products
    floored = floor_seconds(args)
    floor = floored[0] if floored else None
    mib = 2**20
    limits = (
        "none"
        if args.no_limits
        else f"{account_limit(args):g}/s account, {args.operation_rate_limit:g}/s per operation"
    )
    connector = (
        f"{args.max_rps or 'default'} requests/s, "
        f"{args.max_rps_per_operation or 'default'} per operation"
    )
    print()
    print(
        f"account: {args.codes:,} promotion codes, {args.coupons:,} coupons, "
        f"{args.products:,} products ({objects:,} objects, {pages:,} pages of 100); emulator "
        f"latency {args.latency_ms:g} ms, {args.key} key, rate limits {limits}, seeded in "
        f"{emulator.seed_s:.1f} s; connector max {connector}"
    )
    print(
        f"install: {args.install}; DuckDB threads {args.duckdb_threads or 'usable cores'}, "
        f"memory_limit {args.duckdb_memory_limit or 'the runner default'}; Arrow memory pool "
        f"{args.arrow_memory_pool}; "
        f"load average before: {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}; cpus {os.cpu_count()}; pipeline pinned: {not args.no_pin}"
    )
    if floored:
        print(f"rate-limit floor: {floored[1]}= {floored[0]:.2f} s")
    rows: list[tuple[str, ...]] = []
    for label, r, wall, server_requests, server_cpu, rejected in runs:
        ph = r["phases"]
        extract = ph.get("extracting", [0.0, 0.0])[0]
        listed = sum(r["rows"].values())
        cells = [
            ("run", label),
            ("core speed: calibration CPU ms", f"{r['calibration_ms']:.0f}"),
            ("objects written", f"{listed:,}"),
            ("API requests (connector / emulator)", f"{r['requests']:,} / {server_requests:,}"),
            ("answered 429 (emulator)", f"{rejected:,}"),
            ("retries (429 and errors)", f"{r['retries']:,}"),
            ("connector workers per listing", str(r["workers"])),
            ("run_sync wall s", f"{r['run_s']:.2f}"),
            ("objects/s, run_sync", f"{listed / r['run_s']:,.0f}" if listed else "-"),
            ("process wall s (start, imports, run)", f"{wall:.2f}"),
            ("  imports s", f"{r['startup_s']:.2f}"),
        ]
        for phase in PHASES:
            seconds, cpu = ph.get(phase, [0.0, 0.0])
            peak = r["phase_peaks"].get(phase, 0) / mib
            figures = f"{seconds:.2f} ({cpu:.2f}, {peak:.0f})"
            cells.append((f"  {phase} s (CPU s, peak MiB)", figures))
        cells.append(("  extract: first to last API answer s", f"{r['api_s']:.2f}"))
        against = bool(floor and listed)  # a quiet run lists nothing: no floor to compare
        cells.append(("extract / floor", f"{extract / floor:.2f}x" if against else "-"))
        cells.append(("run_sync / floor", f"{r['run_s'] / floor:.2f}x" if against else "-"))
        cells += [
            ("pipeline CPU s (run_sync)", f"{r['run_cpu_s']:.2f}"),
            ("emulator CPU s", f"{server_cpu:.2f}"),
            ("peak RSS MiB (pipeline process)", f"{r['peak_rss'] / mib:.0f}"),
        ]
        rows.append(tuple(value for _, value in cells))
        names = [name for name, _ in cells]
    width = max(len(n) for n in names)
    print()
    for i, name in enumerate(names):
        print(f"{name:<{width}}  " + "  ".join(f"{row[i]:>22}" for row in rows))
    if args.timeline:
        for label, r, *_ in runs:
            print()
            print(f"{label}: API answers per 0.5 s from the start of run_sync")
            counts: dict[int, int] = {}
            for moment in r["answers"]:
                counts[int(moment * 2)] = counts.get(int(moment * 2), 0) + 1
            line = [f"{k / 2:.1f}:{counts.get(k, 0)}" for k in range(max(counts, default=-1) + 1)]
            print(" ".join(line))
            print(f"{label}: RSS MiB every 0.2 s (phase initial)")
            print(" ".join(f"{t:g}{phase[0]}:{mib}" for t, phase, mib in r["memory"]))
    if args.json:
        print()
        print("json: " + json.dumps([{"run": label, **r} for label, r, *_ in runs]))


def change_codes(url: str, key: str, count: int) -> None:
    """Change the metadata of the first `count` promotion codes Stripe lists (one event each),
    through the SDK, 8 requests at a time."""
    import stripe
    from stripe.params import PromotionCodeListParams

    client = stripe.StripeClient(key, base_addresses={"api": url}, max_network_retries=3)
    ids: list[str] = []
    params: PromotionCodeListParams = {"limit": 100}
    while len(ids) < count:
        page = client.v1.promotion_codes.list(params=params)
        ids += [code.id for code in page.data]
        if not page.has_more:
            break
        params["starting_after"] = page.data[-1].id
    stamp = str(time.time_ns())

    def change(code: str) -> None:
        client.v1.promotion_codes.update(code, params={"metadata": {"benchmark": stamp}})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(change, ids[:count]))


def main(argv: list[str] | None = None) -> int:
    """Start the emulator, run the backfill and the quiet run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--codes", type=int, default=100_000, help="promotion codes")
    parser.add_argument("--coupons", type=int, default=10_000)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument(
        "--key", choices=("live", "test"), default="live", help="the key's mode (default: live)"
    )
    parser.add_argument(
        "--no-limits", action="store_true", help="no rate limits anywhere: the CPU-bound case"
    )
    parser.add_argument(
        "--account-rate-limit",
        type=float,
        help="the emulator's account-wide requests/s (default: Stripe's, 100 live / 25 test)",
    )
    parser.add_argument(
        "--operation-rate-limit",
        type=float,
        default=OPERATION_LIMIT,
        help="the emulator's requests/s per operation (default: Stripe's, 25)",
    )
    parser.add_argument(
        "--max-rps", type=float, help="the connector's requests/s (default: its own default)"
    )
    parser.add_argument(
        "--max-rps-per-operation",
        type=float,
        help="the connector's requests/s per operation (default: its own default)",
    )
    parser.add_argument("--destination", default="duckdb")
    parser.add_argument(
        "--duckdb-threads",
        type=int,
        help="DuckDB's threads (DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG); default: "
        "the runner's (the cores the pipeline may use; stripe_promotions_pipeline/tuning.py)",
    )
    parser.add_argument(
        "--duckdb-memory-limit",
        metavar="SIZE",
        help="DuckDB's memory_limit (e.g. 1GB), the same way; default: the runner's "
        "(stripe_promotions_pipeline/tuning.py)",
    )
    parser.add_argument(
        "--arrow-memory-pool",
        choices=("mimalloc", "jemalloc", "system"),
        default="system",
        help="pyarrow's allocator (ARROW_DEFAULT_MEMORY_POOL); default: system, as the command",
    )
    parser.add_argument("--workdir", help="keep the pipeline's files here (default: temporary)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument(
        "--quiet-runs", type=int, default=1, help="runs after the backfill with no changes"
    )
    parser.add_argument(
        "--changes",
        default="",
        help="comma-separated numbers of promotion codes to change before one more run each",
    )
    parser.add_argument(
        "--install",
        choices=("plain", "full"),
        default="plain",
        help="plain (default): hide the packages only the optional extras install (pandas, "
        "SQLAlchemy, Airflow, Dagster) from the pipeline, as after `pip install .`; full: "
        "everything in the venv is importable",
    )
    parser.add_argument(
        "--airflow-secrets",
        action="store_true",
        help="with --install full: leave dlt's Airflow secrets provider on (dlt turns it on "
        "whenever airflow is importable)",
    )
    parser.add_argument("--timeline", action="store_true", help="API answers per half second")
    parser.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        config = json.loads(args.child)
        Path(config["out"]).write_text(json.dumps(child(config)))
        return 0
    if args.no_limits:
        args.max_rps = args.max_rps or UNLIMITED_RPS
        args.max_rps_per_operation = args.max_rps_per_operation or UNLIMITED_RPS
    load = os.getloadavg()
    cores = os.sched_getaffinity(0)
    pipeline_cores: set[int] | None = None
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or stack.enter_context(tempfile.TemporaryDirectory())
        Path(workdir).mkdir(parents=True, exist_ok=True)
        print(f"seeding the emulator ({args.codes:,} codes)...", flush=True)
        emulator = start_emulator(args)
        stack.callback(emulator.stop)
        if len(cores) > 1 and not args.no_pin:
            server_core = max(cores)
            os.sched_setaffinity(emulator.process.pid, {server_core})
            pipeline_cores = cores - {server_core}
        env = {
            "STRIPE_API_KEY": KEYS[args.key],
            "DLT_DATA_DIR": str(Path(workdir) / "dlt"),
            "RUNTIME__DLTHUB_TELEMETRY": "false",
        }
        if args.max_rps:
            env["SOURCES__STRIPE__MAX_REQUESTS_PER_SECOND"] = str(args.max_rps)
        if args.max_rps_per_operation:
            name = "SOURCES__STRIPE__MAX_REQUESTS_PER_SECOND_PER_OPERATION"
            env[name] = str(args.max_rps_per_operation)
        if not args.airflow_secrets:
            env["PROVIDERS__ENABLE_AIRFLOW_SECRETS"] = "false"
        duckdb: dict[str, Any] = {}
        if args.duckdb_threads:
            duckdb["threads"] = args.duckdb_threads
        if args.duckdb_memory_limit:
            duckdb["memory_limit"] = args.duckdb_memory_limit
        if duckdb:
            env["DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"] = json.dumps(duckdb)
        if args.arrow_memory_pool:
            env["ARROW_DEFAULT_MEMORY_POOL"] = args.arrow_memory_pool
        config = {
            "env": env,
            "cwd": workdir,
            "destination": args.destination,
            "api_base": emulator.url,
            "pipelines_dir": str(Path(workdir) / "pipelines"),
            "duckdb_file": str(Path(workdir) / "stripe_pipeline.duckdb")
            if args.destination == "duckdb"
            else None,
            "blocked": EXTRAS_ONLY if args.install == "plain" else [],
        }
        runs: list[tuple[str, dict[str, Any], float, int, float, int]] = []
        labels = ["backfill", *(f"quiet run {n + 1}" for n in range(args.quiet_runs))]
        changes = [int(n) for n in args.changes.split(",") if n.strip()]
        labels += [f"{n:,} changed" for n in changes]
        for label in labels:
            if label.endswith(" changed"):
                change_codes(emulator.url, KEYS[args.key], int(label.split()[0].replace(",", "")))
            emulator.clear_requests()
            cpu, rejected = emulator.cpu_s(), emulator.rejected()
            print(f"{label}...", flush=True)
            try:
                result, wall = run_child(config, pipeline_cores)
            except RunFailed as failed:
                if runs:
                    report(args, emulator, runs, load)
                raise SystemExit(f"{label} failed: {failed}") from None
            requests, rejected = emulator.api_requests(), emulator.rejected() - rejected
            runs.append((label, result, wall, requests, emulator.cpu_s() - cpu, rejected))
        report(args, emulator, runs, load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
