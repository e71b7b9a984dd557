"""The emulator as a process of its own, for the benchmarks: its URL and its controls."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
URL_LINE = re.compile(rb"http://127\.0\.0\.1:\d+")
# The benchmarks' keys, by mode, and Stripe's limits for them (requests/s).
KEYS = {"live": "sk_live_benchmarkKey0123456789", "test": "sk_test_benchmarkKey0123456789"}
ACCOUNT_RATE = {"live": 100.0, "test": 25.0}
OPERATION_RATE = 25.0


@dataclass
class Emulator:
    """The emulator process and its URL."""

    process: subprocess.Popen[bytes]
    url: str
    seed_s: float

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as answer:
            return json.load(answer)

    def clear_requests(self) -> None:
        request = urllib.request.Request(self.url + "/_emulator/requests", method="DELETE")
        with urllib.request.urlopen(request, timeout=30):
            pass

    def api_requests(self) -> int:
        return int(self.get("/_emulator/requests")["total"])

    def rejected(self) -> int:
        """Requests answered 429 so far."""
        return sum(self.get("/_emulator/rate_limits")["rejected"].values())

    def cpu_s(self) -> float:
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def launch_emulator(options: list[str]) -> Emulator:
    """`python -m stripe_emulator --port 0 <options>`, once it has seeded and listens."""
    command = [sys.executable, "-m", "stripe_emulator", "--port", "0", *options]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE)
    assert process.stdout is not None
    line = process.stdout.readline()
    match = URL_LINE.search(line)
    if match is None:
        process.kill()
        raise SystemExit(f"the emulator did not start: {line!r}")
    return Emulator(process, match.group().decode(), time.monotonic() - started)


def platform_arguments(description: str) -> argparse.ArgumentParser:
    """The options of the Connect benchmarks: the platform's size, latency, key and budget."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--accounts", type=int, default=200, help="connected accounts")
    parser.add_argument("--codes", type=int, default=500, help="promotion codes per account")
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--key", choices=KEYS, default="live")
    parser.add_argument("--budget", choices=("platform", "per_account"), default="platform")
    return parser
