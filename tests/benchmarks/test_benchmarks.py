"""The benchmark commands run end to end on tiny accounts and print their figures.

Figures are not asserted (tests never assert wall-clock times); what is checked is that each
command starts the emulator, drives it, and reports what it promises in RESULTS.md.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def row(output: str, label: str) -> list[str]:
    """The cells of one row of the pipeline benchmark's table."""
    line = next(line for line in output.splitlines() if line.startswith(label))
    return re.split(r"\s{2,}", line[len(label) :].strip())


def test_pipeline_backfill_reports_against_the_floor_and_a_quiet_run() -> None:
    output = run(
        "pipeline_backfill.py",
        *("--codes", "400", "--coupons", "40", "--products", "40"),
        *("--latency-ms", "5", "--key", "test"),
    )
    # 6 pages (4 of codes) at Stripe's test-mode limits: 25/s for the account and per list.
    assert "rate-limit floor: max(6 pages / 25 per s, 4 pages of the busiest list" in output
    backfill, quiet = row(output, "API requests (connector / emulator)")
    connector, emulator = backfill.split(" / ")
    assert connector == emulator and int(connector) >= 6
    assert quiet == "4 / 4"
    written = int(row(output, "objects written")[0].replace(",", ""))
    assert 400 <= written <= 480  # a few seeded coupons and products are deleted
    for label in ("objects/s, run_sync", "extract / floor", "peak RSS MiB (pipeline process)"):
        assert all(re.fullmatch(r"[\d,.]+x?|-", cell) for cell in row(output, label))


def test_sdk_pages_compares_every_way() -> None:
    output = run("sdk_pages.py", "--codes", "500", "--pages", "3", "--rounds", "1")
    ways = ("sdk list", "raw_request (OrderedDicts)", "raw_request over urllib3", "urllib3")
    for way in (*ways, "libcurl + orjson (the connector)"):
        assert f"| {way}" in output


def test_emulator_pages_measures_the_server() -> None:
    output = run("emulator_pages.py", "--codes", "1000", "--seconds", "0.5")
    assert "1,000" in output and "pages/s" in output


def test_connect_command_reports_a_first_and_a_quiet_load() -> None:
    output = run(
        "connect_command.py",
        *("--accounts", "3", "--codes", "20", "--latency-ms", "2", "--key", "test"),
    )
    assert "floor of a first load" in output
    first = next(line for line in output.splitlines() if line.startswith("first load:"))
    quiet = next(line for line in output.splitlines() if line.startswith("quiet load 1:"))
    assert "4.0 per connected account" in quiet, output
    assert "0 answered 429" in first, output
