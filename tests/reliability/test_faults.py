"""Faults from Stripe: 500s, 429 storms, latency spikes, dropped connections, late events.

Runs retry within bounds and converge; when retries run out the run says what happened and
what to do, exits non-zero and leaves the raw tables exactly as they were.
RELIABILITY_FAULT_ROUNDS=N repeats every fault scenario N times (default 1).
"""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from stripe_emulator.faults import Plan
from stripe_emulator.server import EmulatorServer
from stripe_promotions_pipeline import RunError, SyncRequest
from tests.reliability.harness import (
    Changes,
    assert_converged,
    assert_cursors_cover_loaded_data,
    has_pending_data,
    local_state,
    main,
    seed,
    warehouse_for,
)
from tests.support import Warehouse

ROUNDS = int(os.environ.get("RELIABILITY_FAULT_ROUNDS", "1"))
# Each scenario: faults, and the account's rate limit (Stripe allowing a test key this many
# requests/s, as when other clients share the key; None: Stripe's own).
SCENARIOS: dict[str, tuple[dict[str, Any], float | None]] = {
    "500s at 30%": ({"error_rate": 0.3}, None),
    "429 storm (3 requests/s)": ({}, 3),
    "latency spikes 0-400 ms": ({"latency_ms": 0, "latency_max_ms": 400}, None),
    "dropped connections 10%": ({"drop_rate": 0.1}, None),
    "all at once": ({"error_rate": 0.15, "drop_rate": 0.05, "latency_max_ms": 150}, 8),
}
# Small pages, so a run makes enough requests for the faults to bite.
OPTIONS = {"max_attempts": 12, "page_size": 10}


@pytest.fixture
def warehouse(isolated: Path, stripe_emulator: EmulatorServer) -> Warehouse:
    stripe_emulator.account.seed(coupons=20, products=10, promotion_codes=30)
    return warehouse_for(isolated, stripe_emulator.url, source_options=dict(OPTIONS))


def raw_snapshot(warehouse: Warehouse) -> dict[str, list[str]]:
    """Every raw table's rows, sorted, as text: to show a failed run changed nothing."""
    tables = warehouse.rows(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'stripe_raw'"
    )
    return {
        t["table_name"]: sorted(
            repr(sorted(row.items()))
            for row in warehouse.rows(f"SELECT * FROM stripe_raw.{t['table_name']}")
        )
        for t in tables
    }


def test_runs_converge_through_injected_faults(
    warehouse: Warehouse, stripe_emulator: EmulatorServer
) -> None:
    account = stripe_emulator.account
    changes = Changes(stripe_emulator, random.Random(seed()))
    injected: Counter[str] = Counter()
    retried = requests = 0
    for _ in range(ROUNDS):
        for name, (faults, limit) in SCENARIOS.items():
            changes.make(5)
            account.faults.reset()
            account.faults.configure(seed=random.Random(seed()).randrange(1 << 30), **faults)
            if limit is not None:
                account.rate_limits.configure(test=limit)
            account.requests.clear()
            try:  # an incremental run, then a full listing (many more requests)
                results = [warehouse.run(), warehouse.run(SyncRequest("sync_all"))]
            finally:
                got = Counter(account.faults.injected())
                got["rate_limited"] += sum(account.rate_limits.rejected().values())
                account.faults.reset()
                account.rate_limits.reset()
            assert all(result.stats.apis for result in results)
            retries = sum(result.stats.retries for result in results)
            retried += retries
            made = sum(result.stats.requests for result in results)
            requests += made
            injected.update(got)
            # Every injected fault cost one retry, and the runs still converged. libcurl itself
            # sends a request again, once, when a reused keep-alive connection closes before
            # any answer (transport.py): the emulator counts those, the connector does not.
            resent = sum(account.requests.values()) - made
            assert 0 <= resent <= got.get("drop", 0), (name, got, resent)
            assert retries + resent == sum(got.values()), (name, got, resent)
            assert_converged(warehouse, account)
            root = warehouse_root(warehouse)
            assert_cursors_cover_loaded_data(warehouse, account, local_state(root))
    print(
        f"fault figures: rounds={ROUNDS} scenarios={len(SCENARIOS)} injected={dict(injected)} "
        f"(total {sum(injected.values())}) pipeline requests={requests} retried={retried} lost=0"
    )
    assert sum(injected.values()) > 0


def warehouse_root(warehouse: Warehouse) -> Path:
    """The folder the warehouse's pipelines folder sits in (the command's working folder)."""
    assert warehouse.settings.pipelines_dir is not None
    return Path(warehouse.settings.pipelines_dir).parents[1]


def test_events_that_become_visible_late_are_not_lost(
    warehouse: Warehouse, stripe_emulator: EmulatorServer
) -> None:
    account = stripe_emulator.account
    warehouse.run()
    account.set_event_delay(2)
    changes = Changes(stripe_emulator, random.Random(seed() + 1))
    for _ in range(3):
        made = changes.make(6)
        assert made
        warehouse.run()  # the changes' events are not listed yet
        account.advance_clock(3)  # now they are; the next run re-reads behind its cursor
    account.set_event_delay(0)
    warehouse.run()
    assert_converged(warehouse, account)
    assert_cursors_cover_loaded_data(warehouse, account, local_state(warehouse_root(warehouse)))


def test_retries_exhausted_fail_clearly_and_change_nothing(
    warehouse: Warehouse,
    stripe_emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    account = stripe_emulator.account
    warehouse.run()
    Changes(stripe_emulator, random.Random(seed())).make(8)
    before = raw_snapshot(warehouse)
    state_before = local_state(warehouse_root(warehouse))

    # Every request fails: the command exits 1 and says what happened and what to do.
    account.faults.configure(error_rate=1.0)
    monkeypatch.setenv("SOURCES__STRIPE__MAX_ATTEMPTS", "2")
    assert main(["--api-base", stripe_emulator.url, "--quiet"]) == 1
    message = capfd.readouterr().err
    assert "Stripe kept failing (500) after 2 attempts" in message
    assert "Run again later: the next run resumes" in message
    assert "Traceback" not in message

    # Failures part-way through: some pages read, then Stripe fails for good.
    account.faults.configure(error_rate=0.0)
    answered = account.faults.plan
    failed = 0
    for successes in (1, 2, 4):  # an incremental run here makes about 5 requests
        served = iter(range(successes))

        def first_ones_only(served: Any = served) -> Plan:
            return answered() if next(served, None) is not None else Plan(0.0, "server_error")

        monkeypatch.setattr(account.faults, "plan", first_ones_only)
        with pytest.raises(RunError, match="after 2 attempts"):
            warehouse.run(source_options={**OPTIONS, "max_attempts": 2})
        failed += 1
    monkeypatch.setattr(account.faults, "plan", answered)
    assert raw_snapshot(warehouse) == before
    assert local_state(warehouse_root(warehouse)) == state_before
    assert not has_pending_data(warehouse)

    # Once Stripe answers again, the next run converges.
    warehouse.run()
    assert_converged(warehouse, account)
    print(f"exhausted-retry figures: failed runs={failed + 1}, raw rows changed=0")
