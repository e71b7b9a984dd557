"""What the reliability tests share: the command as a subprocess one can kill in a chosen phase,
random changes in Stripe between runs, and the convergence and cursor checks.

Counts are CI-sized; the environment scales them (see docs/RELIABILITY.md):
RELIABILITY_KILLS (kills in the crash test), RELIABILITY_SEED (the random sequence).
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import stripe
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from stripe_emulator import Account
from stripe_emulator.errors import StripeError as EmulatorError
from stripe_emulator.server import EmulatorServer
from stripe_promotions.settings import EVENT_LAG_SECONDS
from stripe_promotions_pipeline import PipelineConfig, make_pipeline
from stripe_promotions_pipeline.command import main as command_main
from tests.model.model import KINDS, NEW_VERSION, TABLES, actual, expected
from tests.support import COMMAND, TEST_KEY, Warehouse, setup_client

PHASES = ("resuming", "extracting", "normalizing", "loading", "transforming")


def main(argv: list[str]) -> int:
    """The command's `main`, in-process."""
    return command_main(argv)


def seed() -> int:
    """The random sequence (RELIABILITY_SEED), printed by tests so a failure can be replayed."""
    return int(os.environ.get("RELIABILITY_SEED", "20261121"))


def command_env(cwd: Path, key: str | None = TEST_KEY, **extra: str) -> dict[str, str]:
    """The environment test_command.py gives the command: dlt's data in `cwd`, the key."""
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))
    }
    environment.pop("STRIPE_API_KEY", None)
    environment.update(DLT_DATA_DIR=str(cwd / "dlt"), RUNTIME__DLTHUB_TELEMETRY="false")
    if key is not None:
        environment["STRIPE_API_KEY"] = key
    environment.update(extra)
    return environment


def warehouse_for(cwd: Path, url: str, **changes: Any) -> Warehouse:
    """The same pipeline and DuckDB file the command uses in `cwd`, for in-process runs."""
    return Warehouse(
        "duckdb",
        PipelineConfig(
            api_base=url,
            pipelines_dir=str(cwd / "dlt" / "pipelines"),
            duckdb_file=str(cwd / "stripe_pipeline.duckdb"),
            progress=False,
            **changes,
        ),
    )


@dataclass
class Finished:
    """A command run that ended: how, what it printed, and the last phase it reached."""

    returncode: int
    stdout: str
    stderr: str
    killed: bool
    phase: str | None  # the last phase line printed (None: killed before extracting)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class CommandRun:
    """The command as a subprocess; its stderr is read line by line as it comes."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [*COMMAND, *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        self.stdout: list[str] = []
        assert self.process.stderr is not None and self.process.stdout is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stderr, True), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stdout, False), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any, phases: bool) -> None:
        for line in stream:
            (self.stderr if phases else self.stdout).append(line)
            if phases:
                self.lines.put(line.strip())
        if phases:
            self.lines.put(None)

    def wait_for(self, wanted: tuple[str, ...], timeout: float = 120) -> str | None:
        """Block until the command prints one of these phase lines; None if it ended first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {wanted} line in {timeout} s: {self.stderr}") from None
            if line is None:
                return None
            phase = line.rstrip("…")
            if phase in wanted:
                return phase

    def signal(self, signum: int) -> bool:
        """Send a signal; False if the process had already ended."""
        if self.process.poll() is not None:
            return False
        os.kill(self.process.pid, signum)
        return True

    def finish(self, timeout: float = 180) -> Finished:
        """Wait for the end; the phase is the last phase line it printed."""
        returncode = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=30)
        phases = [line.strip().rstrip("…") for line in self.stderr]
        reached = [p for p in phases if p in PHASES]
        return Finished(
            returncode=returncode,
            stdout="".join(self.stdout),
            stderr="".join(self.stderr),
            killed=returncode == -signal.SIGKILL,
            phase=reached[-1] if reached else None,
        )


@contextmanager
def faults_off(account: Account) -> Iterator[None]:
    """Changes made by the test itself go through without latency, injected faults or rate
    limits."""
    faults = account.faults
    saved = {
        name: getattr(faults, name)
        for name in ("latency_ms", "latency_max_ms", "error_rate", "drop_rate")
    }
    faults.configure(latency_ms=0.0, latency_max_ms=None, error_rate=0.0, drop_rate=0.0)
    try:
        with account.rate_limits.paused():
            yield
    finally:
        faults.configure(**saved)


@dataclass
class Changes:
    """Random changes in Stripe between runs: creates, updates, deletions, redemptions."""

    server: EmulatorServer
    rng: random.Random
    counter: int = 0
    made: list[str] = field(default_factory=list)

    @property
    def client(self) -> stripe.StripeClient:
        return setup_client(self.server.url)

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def live(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.server.account.state(kind, NEW_VERSION)

    def make(self, count: int) -> list[str]:
        """`count` random changes (each one that Stripe refuses is skipped)."""
        done = []
        with faults_off(self.server.account):
            for _ in range(count):
                change = self.rng.choice(
                    [
                        self.create_coupon,
                        self.create_product,
                        self.create_code,
                        self.update_coupon,
                        self.update_product,
                        self.toggle_code,
                        self.redeem,
                        self.delete_coupon,
                        self.delete_product,
                    ]
                )
                try:
                    done.append(change())
                except (stripe.StripeError, EmulatorError, IndexError, ValueError):
                    continue
        self.made += done
        return done

    def create_coupon(self) -> str:
        params: Any = {"id": self.name("CPN"), "duration": "once"}
        if self.rng.random() < 0.5:
            params["percent_off"] = self.rng.choice([5, 12.5, 50])
        else:
            params.update(amount_off=self.rng.choice([100, 500]), currency="usd")
        self.client.v1.coupons.create(params=params)
        return f"create coupon {params['id']}"

    def create_product(self) -> str:
        product = self.client.v1.products.create(params={"name": self.name("Product ")})
        return f"create product {product.id}"

    def create_code(self) -> str:
        valid = sorted(i for i, c in self.live("coupon").items() if c["valid"])
        coupon = self.rng.choice(valid)
        code = self.client.v1.promotion_codes.create(
            params={"code": self.name("CODE"), "promotion": {"type": "coupon", "coupon": coupon}}
        )
        return f"create code {code.id}"

    def update_coupon(self) -> str:
        coupon = self.rng.choice(sorted(self.live("coupon")))
        params: Any = (
            {"name": self.name("n")}
            if self.rng.random() < 0.5
            else {"metadata": {"k": self.name("v")}}
        )
        self.client.v1.coupons.update(coupon, params=params)
        return f"update coupon {coupon}"

    def update_product(self) -> str:
        products = self.live("product")
        product = self.rng.choice(sorted(products))
        params: Any = (
            {"active": not products[product]["active"]}
            if self.rng.random() < 0.5
            else {"metadata": {"sku": self.name("s")}}
        )
        self.client.v1.products.update(product, params=params)
        return f"update product {product}"

    def toggle_code(self) -> str:
        codes = self.live("promotion_code")
        code = self.rng.choice(sorted(codes))
        self.client.v1.promotion_codes.update(code, params={"active": not codes[code]["active"]})
        return f"toggle code {code}"

    def redeem(self) -> str:
        codes = self.live("promotion_code")
        code = self.rng.choice(sorted(i for i, c in codes.items() if c["active"]))
        self.server.account.redeem(code)
        return f"redeem {code}"

    def delete_coupon(self) -> str:
        coupon = self.rng.choice(sorted(self.live("coupon")))
        self.client.v1.coupons.delete(coupon)
        return f"delete coupon {coupon}"

    def delete_product(self) -> str:
        products = self.live("product")
        product = self.rng.choice(sorted(i for i, p in products.items() if not p["default_price"]))
        self.client.v1.products.delete(product)
        return f"delete product {product}"


# -- the checks -----------------------------------------------------------------------------------
def assert_converged(warehouse: Warehouse, account: Account) -> dict[str, int]:
    """The current-state tables equal Stripe's state (invariant 1); rows per table."""
    counts = {}
    for kind in KINDS:
        rows = warehouse.rows(f"SELECT * FROM stripe.{TABLES[kind]}")
        ids = [row["id"] for row in rows]
        assert len(ids) == len(set(ids)), f"duplicated {kind} rows"
        table = {row["id"]: row for row in rows}
        state = account.state(kind, NEW_VERSION)
        deleted = account.deleted_ids(kind)
        for object_id, obj in state.items():
            assert object_id in table, f"{kind} {object_id} missing"
            row = table[object_id]
            assert row["is_deleted"] is False, f"{kind} {object_id} flagged deleted"
            assert actual(kind, row) == expected(kind, obj), f"{kind} {object_id} differs"
        for object_id, row in table.items():
            if object_id not in state:
                assert object_id in deleted, f"{kind} {object_id} never existed"
                assert row["is_deleted"] is True and row["deleted_at"] is not None, object_id
        counts[TABLES[kind]] = len(rows)
    assert_no_duplicate_observations(warehouse)
    return counts


# The merge keys of the raw tables: a resumed load must not write a row twice.
RAW_KEYS = {
    **{TABLES[kind]: "account_id, id, _observation_key" for kind in KINDS},
    "events": "account_id, id",
    "full_listings": "listing_id",
    "sync_runs": "run_id, resource, account_id",
}


def assert_no_duplicate_observations(warehouse: Warehouse) -> None:
    """Every raw table holds each key once."""
    for table, key in RAW_KEYS.items():
        query = f"SELECT {key}, COUNT(*) AS n FROM stripe_raw.{table} GROUP BY {key}"
        duplicated = warehouse.rows(query + " HAVING COUNT(*) > 1")
        assert not duplicated, f"stripe_raw.{table} duplicates {duplicated[:3]}"


def local_state(cwd: Path) -> dict[str, Any]:
    """dlt's pipeline state as the command's working folder holds it."""
    path = cwd / "dlt" / "pipelines" / "stripe_pipeline" / "state.json"
    if not path.exists():
        return {}
    state: dict[str, Any] = json.loads(path.read_text())
    return state


def cursors(state: dict[str, Any]) -> dict[str, int | None]:
    """The key's own account's cursors: `created` per object table, and the events cursor."""
    source = state.get("sources", {}).get("stripe", {})
    own = source.get("accounts", {}).get(source.get("own_account"), {})
    found: dict[str, int | None] = {}
    for kind in KINDS:
        found[TABLES[kind]] = own.get("created", {}).get(kind, {}).get("cursor")
    found["events"] = own.get("events", {}).get("cursor")
    return found


def assert_cursors_cover_loaded_data(
    warehouse: Warehouse, account: Account, state: dict[str, Any]
) -> None:
    """No cursor is past data that was not loaded (invariant 3), after a completed run.

    A listing re-reads from `created >= cursor`, so every object created before the cursor
    must be in its raw table; events are re-read from `cursor - EVENT_LAG_SECONDS`, so every
    event created before that must be in stripe_raw.events.
    """
    found = cursors(state)
    for kind in KINDS:
        cursor = found[TABLES[kind]]
        if cursor is None:
            continue
        query = f"SELECT DISTINCT id FROM stripe_raw.{TABLES[kind]}"
        loaded = {row["id"] for row in warehouse.rows(query)}
        behind = {i for i, obj in account.state(kind).items() if obj["created"] < cursor}
        assert behind <= loaded, f"{kind} cursor {cursor} passed unloaded {behind - loaded}"
    events_cursor = found["events"]
    if events_cursor is not None:
        loaded = {row["id"] for row in warehouse.rows("SELECT id FROM stripe_raw.events")}
        horizon = events_cursor - EVENT_LAG_SECONDS
        behind = {
            record.id
            for record in account.events.records.values()
            if record.created < horizon
            and account.events.visible(record)
            and record.type.split(".")[0] in KINDS
        }
        first_cursor = min(
            (row["server_time"] for row in warehouse.rows("SELECT * FROM stripe_raw.sync_runs")),
            default=0,
        )
        # Events from before the first run are covered by its listings, never read as events.
        behind = {i for i in behind if account.events.records[i].created >= first_cursor}
        assert behind <= loaded, f"events cursor {events_cursor} passed unloaded events"


def destination_state_version(warehouse: Warehouse) -> int | None:
    """The newest pipeline state version loaded into the destination."""
    try:
        rows = warehouse.rows("SELECT MAX(version) AS v FROM stripe_raw._dlt_pipeline_state")
    except DatabaseUndefinedRelation:  # nothing loaded yet: no dataset, no state table
        return None
    return rows[0]["v"] if rows else None


def has_pending_data(warehouse: Warehouse) -> bool:
    """Whether the working folder holds extracted data not loaded yet."""
    return bool(make_pipeline(warehouse.settings).has_pending_data)
