"""Invariant 1 and 2 under random changes and runs in every mode, on DuckDB and PostgreSQL.

Hypothesis drives the emulator with creates, updates, archives, deactivations, redemptions,
deletions, clock jumps past the 30-day event retention, API version changes and event
visibility delays, interleaved with incremental runs, sync all, sync by ids, batches (bare
objects and replayed webhooks, old ones included) and soft deletes. The emulator is a Connect
platform: changes land in its own account or a connected one (the same id in two accounts
among them), runs read every account, the key's own or one, the verbs act on one (`account=`),
and a connected account may be disconnected or deleted on the way. After every run the
current-state tables must equal the emulator's state per (account_id, id) in the accounts it
read, and stay as they were in the others; the history tables must be well formed (versions in
order, contiguous, the last one equal to the current-state row), and "as of" every second at
which a run observed Stripe must give Stripe's state then, wherever the documented rules say
the history knows it (tests/model/model.py says which). MODEL_PROFILE=deep runs it longer.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from stripe_promotions_pipeline import PipelineConfig
from tests.conftest import create_database
from tests.model.model import StripeModel, profile
from tests.support import Warehouse

HERE = Path(__file__).parent
SQL = HERE.parents[1] / "transforms" / "stripe_promotions_transforms"


def machine(destination: str, root: Path, pg_socket: str | None, sql: Path | None) -> type:
    """The state machine, with a fresh destination for every example."""
    numbers = itertools.count()

    def make_warehouse(api_base: str) -> Warehouse:
        folder = root / f"example{next(numbers)}"
        base = PipelineConfig(
            api_base=api_base,
            pipelines_dir=str(folder / "pipelines"),
            progress=False,
            transforms_dir=sql,
        )
        if destination == "postgres":
            assert pg_socket is not None
            credentials = create_database(pg_socket)

            os.environ["DESTINATION__POSTGRES__CREDENTIALS"] = credentials
            return Warehouse(
                "postgres", PipelineConfig(**{**vars(base), "destination": "postgres"})
            )
        return Warehouse(
            "duckdb",
            PipelineConfig(**{**vars(base), "duckdb_file": str(folder / "warehouse.duckdb")}),
        )

    return type(
        f"StripeModel_{destination}",
        (StripeModel,),
        {"make_warehouse": staticmethod(make_warehouse)},
    )


EXAMPLES, STEPS = profile()
RUN = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
)


@pytest.mark.parametrize("destination", ["duckdb", "postgres"])
def test_current_state_equals_stripe(
    destination: str, isolated: Path, request: pytest.FixtureRequest
) -> None:
    socket = request.getfixturevalue("postgres_socket") if destination == "postgres" else None
    run_state_machine_as_test(machine(destination, isolated, socket, None), settings=RUN)


def test_a_transform_that_ignores_tombstones_is_caught(isolated: Path) -> None:
    broken = isolated / "broken_sql"
    shutil.copytree(SQL, broken)
    shared = broken / "_current_state.sql"
    text = shared.read_text()
    sabotaged = text.replace(
        "v.observed_deleted OR v.missing_from_listing AS is_deleted",
        "v.missing_from_listing AS is_deleted",
    )
    assert sabotaged != text
    shared.write_text(sabotaged)
    with pytest.raises(AssertionError):
        run_state_machine_as_test(
            machine("duckdb", isolated, None, broken),
            # Finding one counterexample is the point: no shrinking, no example database.
            settings=settings(RUN, max_examples=100, phases=[Phase.generate], database=None),
        )
