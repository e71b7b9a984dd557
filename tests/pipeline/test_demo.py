"""The demo's own data reads right: amounts in major units, and the change it announces shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[2]


def row_lines(table: str, key: str) -> list[str]:
    """The printed lines of the table row whose first cell is `key` (cells may wrap)."""
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"│ {re.escape(key)} ", line))
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not re.match(r"│\s+│", line):  # the next row, or the table's bottom
            break
        block.append(line)
    return block


def test_demo_names_amounts_in_major_units_and_shows_the_changed_metadata(
    tmp_path: Path,
) -> None:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))
    }
    environment.update(DLT_DATA_DIR=str(tmp_path / "dlt"), RUNTIME__DLTHUB_TELEMETRY="false")
    done = subprocess.run(
        [sys.executable, str(ROOT / "pipelines" / "stripe_pipeline.py"), "demo"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr

    announced = re.search(r"coupon (\w+): metadata (\w+=\w+)", done.stdout)
    assert announced, done.stdout
    coupon_id, change = announced.groups()
    coupons = done.stdout.split("stripe.coupons")[-1].split("stripe.products")[0]
    header = next(line for line in coupons.splitlines() if "┃ id" in line)
    assert "metadata" in header, coupons
    assert change in "".join(row_lines(coupons, coupon_id)), coupons

    with duckdb.connect(str(tmp_path / "stripe_demo.duckdb"), read_only=True) as db:
        amounts = db.sql(
            "SELECT name, amount_off_major, currency FROM stripe.coupons "
            "WHERE discount_type = 'amount' AND name IS NOT NULL"
        ).fetchall()
    assert {"jpy", "eur"} <= {currency for _, _, currency in amounts}
    for name, major, currency in amounts:
        number, unit, _ = name.split(" ")
        assert unit == currency.upper(), name
        assert Decimal(number.replace(",", "")) == Decimal(str(major)), (name, major)
