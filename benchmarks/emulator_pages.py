"""List pages per second served by the Stripe emulator, with 10,000 and 1,000,000 codes.

Usage (from the repository root):

    .venv/bin/python benchmarks/emulator_pages.py [--codes 10000 1000000] [--seconds 10]
        [--concurrency 8] [--core N]

For each size the emulator runs as a separate process
(`python -m stripe_emulator --port 0 --no-rate-limits --seed N`: Stripe's rate limits would
measure the limit, not the server; its URL is read from its first line of
output), so the server process is what is measured, and this process drives it over
keep-alive connections on 127.0.0.1 with `--concurrency` asyncio workers. Every request
asks for a full page, `GET /v1/promotion_codes?limit=100`, the way a connector pages:

* a walk starts at a random `created[lte]` (sometimes with a `created[gte]` too) anywhere in
  the seeded year, so the created filter lands deep inside the big index;
* it then follows `starting_after=<last id>` for up to 20 pages, keeping the created filter
  on half of the walks (an incremental load) and dropping it on the others (a cursor alone).

Each size is measured twice for `--seconds` each, after a short warm-up: once with the server
free to use any core, and once with the server pinned to one core (`sched_setaffinity`) and
this process kept off that core, since the target (500 pages/s, limit 100) is per core.

Columns: startup-and-seed time; pages/s and objects/s; p50/p95 latency seen by the client;
server CPU, the server process's user + system time over wall time (psutil; 100% is one core
busy); pages per server CPU-second, what one fully busy core serves, which holds up best
when the machine is shared; client CPU, this process's share (near 100% would mean the
client, not the server, is the limit); other CPU, everything else the machine did meanwhile
(other processes, interrupts, loopback traffic handled outside either process), where much
above zero means a busy machine; the server's resident memory; and non-200 answers.

The client reads only what it needs from each body (status, object count, last id,
`has_more`) without a full JSON parse, to keep its own cost small.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
# The emulator without rate limits: these benchmarks measure CPU, not Stripe's limits.
EMULATOR = [sys.executable, "-m", "stripe_emulator", "--port", "0", "--no-rate-limits"]
HEADERS = {
    "Authorization": "Bearer sk_test_bench123456",
    "Stripe-Version": "2026-10-28.endive",
}
URL_LINE = re.compile(rb"http://127\.0\.0\.1:\d+")
SEED_SPAN = 365 * 24 * 3600  # the seed spreads objects over a year before now
MAX_WALK = 20
WARMUP_SECONDS = 1.5
REQUEST_TIMEOUT = 30.0  # a stuck server fails the run instead of hanging it


@dataclass
class Window:
    """What one measured window saw."""

    label: str
    seconds: float = 0.0
    pages: int = 0
    objects: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    other_cpu: float = 0.0
    server_rss: int = 0


def last_id(body: bytes) -> str | None:
    """The id of the page's last object.

    In this API version each promotion code opens with its id and embeds no coupon object, so
    the last `{"id":"` of the compact orjson body belongs to the last code.
    """
    start = body.rfind(b'{"id":"')
    if start < 0:
        return None
    start += 7
    return body[start : body.index(b'"', start)].decode()


async def walker(
    session: aiohttp.ClientSession,
    base: str,
    newest: int,
    deadline: float,
    window: Window | None,
    rng: random.Random,
) -> None:
    """Page through the list in random walks until the deadline."""
    url = base + "/v1/promotion_codes"
    while time.perf_counter() < deadline:
        lte = newest - rng.randrange(SEED_SPAN)
        created: dict[str, str] = {"created[lte]": str(lte)}
        if rng.random() < 0.25:
            created["created[gte]"] = str(lte - rng.randrange(3600, 60 * 24 * 3600))
        keep_filter = rng.random() < 0.5
        cursor: str | None = None
        for step in range(rng.randint(1, MAX_WALK)):
            query: dict[str, str] = {"limit": "100"}
            if step == 0 or keep_filter:
                query.update(created)
            if cursor is not None:
                query["starting_after"] = cursor
            started = time.perf_counter()
            async with session.get(url, params=query, headers=HEADERS) as response:
                body = await response.read()
                status = response.status
            elapsed = time.perf_counter() - started
            if window is not None:
                if status != 200:
                    window.errors += 1
                else:
                    window.pages += 1
                    window.objects += body.count(b'"object":"promotion_code"')
                    window.latencies.append(elapsed)
            if status != 200 or time.perf_counter() >= deadline:
                break
            cursor = last_id(body)
            if cursor is None or b'"has_more":true' not in body[-200:]:
                break


async def drive(
    base: str, seconds: float, concurrency: int, server: psutil.Process, label: str
) -> Window:
    """Warm up, then measure one window of `seconds` with `concurrency` workers."""
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async with session.get(base + "/v1/promotion_codes?limit=1", headers=HEADERS) as first:
            newest = int((await first.json())["data"][0]["created"])
        rng = random.Random(7)
        warm_until = time.perf_counter() + WARMUP_SECONDS
        await asyncio.gather(
            *(
                walker(session, base, newest, warm_until, None, random.Random(rng.random()))
                for _ in range(concurrency)
            )
        )
        window = Window(label)
        me = psutil.Process()
        server_before, client_before = cpu_seconds(server), cpu_seconds(me)
        busy_before = busy_seconds()
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(
            *(
                walker(session, base, newest, deadline, window, random.Random(rng.random()))
                for _ in range(concurrency)
            )
        )
        window.seconds = time.perf_counter() - started
        window.server_cpu = (cpu_seconds(server) - server_before) / window.seconds
        window.client_cpu = (cpu_seconds(me) - client_before) / window.seconds
        busy = (busy_seconds() - busy_before) / window.seconds
        window.other_cpu = max(0.0, busy - window.server_cpu - window.client_cpu)
        window.server_rss = server.memory_info().rss
    return window


def cpu_seconds(process: psutil.Process) -> float:
    """User plus system CPU time of a process (all its threads)."""
    times = process.cpu_times()
    return float(times.user + times.system)


def busy_seconds() -> float:
    """CPU time spent by the whole machine (every core, every process, the kernel)."""
    times = psutil.cpu_times()
    busy = ("user", "nice", "system", "irq", "softirq", "steal")  # guest is inside user
    return float(sum(getattr(times, name, 0.0) for name in busy))


def start_server(codes: int) -> tuple[subprocess.Popen[bytes], str, float]:
    """Start a seeded emulator process; return it, its URL and the startup-and-seed time."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [*EMULATOR, "--seed", str(codes)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    seeded = time.perf_counter() - started
    match = URL_LINE.search(line)
    if match is None:
        process.kill()
        raise SystemExit(f"the emulator did not start: {line!r}")
    return process, match.group().decode(), seeded


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the emulator stops cleanly on it), then kill if it lingers."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def measure(codes: int, seconds: float, concurrency: int, core: int) -> list[tuple[Any, ...]]:
    """Both windows for one size, as table rows."""
    process, base, seeded = start_server(codes)
    server = psutil.Process(process.pid)
    cores = os.sched_getaffinity(0)
    rows = []
    try:
        windows = [asyncio.run(drive(base, seconds, concurrency, server, "any core"))]
        if len(cores) > 1:
            os.sched_setaffinity(process.pid, {core})
            os.sched_setaffinity(0, cores - {core})
            try:
                label = f"pinned to core {core}"
                windows.append(asyncio.run(drive(base, seconds, concurrency, server, label)))
            finally:
                os.sched_setaffinity(0, cores)
        for window in windows:
            rows.append(row(codes, seeded, window))
    finally:
        stop_server(process)
    return rows


def row(codes: int, seeded: float, window: Window) -> tuple[Any, ...]:
    """One line of the table."""
    if window.latencies:
        cuts = statistics.quantiles(window.latencies, n=20, method="inclusive")
        p50, p95 = statistics.median(window.latencies) * 1000, cuts[18] * 1000
    else:
        p50 = p95 = float("nan")
    return (
        f"{codes:,}",
        f"{seeded:.1f}",
        window.label,
        f"{window.pages / window.seconds:,.0f}",
        f"{window.objects / window.seconds:,.0f}",
        f"{p50:.1f}",
        f"{p95:.1f}",
        f"{window.server_cpu:.0%}",
        f"{window.pages / window.seconds / window.server_cpu:,.0f}" if window.server_cpu else "-",
        f"{window.client_cpu:.0%}",
        f"{window.other_cpu:.0%}",
        f"{window.server_rss / 2**20:,.0f}",
        str(window.errors),
    )


HEADER = (
    "codes",
    "start+seed s",
    "server",
    "pages/s",
    "objects/s",
    "p50 ms",
    "p95 ms",
    "server CPU",
    "pages per server CPU-s",
    "client CPU",
    "other CPU",
    "server RSS MiB",
    "errors",
)


def print_table(rows: list[tuple[Any, ...]]) -> None:
    """A Markdown table, ready for RESULTS.md."""
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "|".join("---" if i == 2 else "---:" for i in range(len(HEADER))) + "|")
    for line in rows:
        print("| " + " | ".join(line) + " |")


def main(argv: list[str] | None = None) -> int:
    """Run every size and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--codes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per window")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent connections")
    parser.add_argument(
        "--core", type=int, help="core to pin the server to (default: the last usable one)"
    )
    args = parser.parse_args(argv)
    core = args.core if args.core is not None else max(os.sched_getaffinity(0))
    print(
        f"{os.cpu_count()} CPUs; {args.seconds:g} s per window; "
        f"{args.concurrency} keep-alive connections",
        flush=True,
    )
    rows = []
    for codes in args.codes:
        rows.extend(measure(codes, args.seconds, args.concurrency, core))
        print(f"measured {codes:,} codes", flush=True)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
