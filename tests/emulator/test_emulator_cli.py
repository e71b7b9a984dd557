"""`python -m stripe_emulator`: starts, serves a seeded account to the SDK, stops; bad options."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

from tests.emulator.emulator_support import emulator_process, ids

ROOT = Path(__file__).resolve().parents[2]


def test_serves_the_demo_seed_until_terminated() -> None:
    with emulator_process("--seed", "demo") as (line, client):
        counts = {
            kind: int(number)
            for number, kind in re.findall(r"(\d+) (coupons|products|promotion codes)", line)
        }
        assert set(counts) == {"coupons", "products", "promotion codes"}, line
        assert counts["promotion codes"] == 60 and min(counts.values()) > 0
        listed = {
            "coupons": ids(client.v1.coupons.list(params={"limit": 100}).auto_paging_iter()),
            "products": ids(client.v1.products.list(params={"limit": 100}).auto_paging_iter()),
            "promotion codes": ids(
                client.v1.promotion_codes.list(params={"limit": 100}).auto_paging_iter()
            ),
        }
        assert {kind: len(found) for kind, found in listed.items()} == counts
        assert len(client.v1.events.list().data) > 0


def test_bad_seed_exits_non_zero_with_a_message() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stripe_emulator", "--port", "0", "--seed", "lots"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "--seed" in done.stderr and "lots" in done.stderr
    assert "http://" not in done.stdout


def test_busy_port_exits_non_zero_with_a_message() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "stripe_emulator", "--port", str(port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
