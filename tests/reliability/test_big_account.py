"""Any account loads on any machine: DuckDB's memory limit never fails a run (invariant 7).

DuckDB spills sorts, joins and aggregates beyond its memory limit, but the window functions
of dlt's merge and of the transforms need working memory per thread that grows with the rows.
A fixed limit therefore fails, on a machine with many cores first and on a big account next.
Loading a big account takes minutes; instead these tests shrink the memory per thread by
giving DuckDB many threads, over an account of a few dozen pages.
"""

from __future__ import annotations

import json
import os
from itertools import pairwise
from typing import Any

import dlt
import pytest

import stripe_promotions_pipeline
import stripe_promotions_pipeline.runner
import stripe_promotions_pipeline.tuning
import stripe_promotions_transforms
from stripe_emulator.server import EmulatorServer
from stripe_promotions_pipeline import RunError
from stripe_promotions_pipeline.tuning import DUCKDB_GLOBAL_CONFIG
from tests.reliability.harness import assert_converged
from tests.support import Warehouse

MANY_CORES = 16
# Too little memory for these threads to transform this account, every time.
STARVED = {"threads": MANY_CORES, "memory_limit": "12MB"}


@pytest.fixture
def account(stripe_emulator: EmulatorServer) -> EmulatorServer:
    """A few thousand objects: about forty requests for a backfill, four per quiet run."""
    stripe_emulator.account.seed(promotion_codes=2000, coupons=200, products=200)
    return stripe_emulator


def backfill_and_quiet_runs(warehouse: Warehouse, account: EmulatorServer) -> None:
    """A backfill and two runs with nothing changed all succeed, and converge."""
    first = warehouse.run()
    assert first.tables and all(t.rows for t in first.tables)
    counts = assert_converged(warehouse, account.account)
    for _ in range(2):
        quiet = warehouse.run()
        assert all(t.new == t.updated == t.deleted == 0 for t in quiet.tables)
    assert assert_converged(warehouse, account.account) == counts


def test_a_machine_with_many_cores_loads_and_transforms(
    duckdb_warehouse: Warehouse, account: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stripe_promotions_pipeline.tuning, "usable_cores", lambda: MANY_CORES)
    backfill_and_quiet_runs(duckdb_warehouse, account)
    threads = duckdb_warehouse.rows("SELECT current_setting('threads') AS value")[0]["value"]
    assert threads == MANY_CORES


def test_a_step_that_outgrows_our_limit_runs_again_without_it(
    duckdb_warehouse: Warehouse, account: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Our limit too small for the work, as it is for any limit on a big enough account.
    monkeypatch.setattr(stripe_promotions_pipeline.tuning, "duckdb_settings", lambda: dict(STARVED))
    configs: dict[str, list[dict[str, Any]]] = {"load": [], "transform": []}
    load, transform = dlt.Pipeline.load, stripe_promotions_transforms.run_transforms

    def watched(step: str, run: Any) -> Any:
        def watched_step(*args: Any, **kwargs: Any) -> Any:
            configs[step].append(json.loads(os.environ[DUCKDB_GLOBAL_CONFIG]))
            return run(*args, **kwargs)

        return watched_step

    monkeypatch.setattr(dlt.Pipeline, "load", watched("load", load))
    monkeypatch.setattr(
        stripe_promotions_pipeline.runner, "run_transforms", watched("transform", transform)
    )
    backfill_and_quiet_runs(duckdb_warehouse, account)
    # A step that ran out of memory under our limit ran once more under DuckDB's own (the
    # transforms do every time here; the backfill's load mostly), and only that step did.
    unlimited = {"threads": MANY_CORES}
    assert configs["transform"][:2] == [STARVED, unlimited]
    for step in configs.values():
        assert step[0] == STARVED
        assert all(b == STARVED for a, b in pairwise(step) if a == unlimited)
        assert all(config in (STARVED, unlimited) for config in step)
    assert json.loads(os.environ[DUCKDB_GLOBAL_CONFIG]) == STARVED


def test_a_users_own_limit_is_never_lifted(
    duckdb_warehouse: Warehouse, account: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DUCKDB_GLOBAL_CONFIG, json.dumps(STARVED))
    with pytest.raises(RunError, match="Out of Memory"):
        duckdb_warehouse.run()
    assert json.loads(os.environ[DUCKDB_GLOBAL_CONFIG]) == STARVED
