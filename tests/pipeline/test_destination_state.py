"""The destination is the truth (invariant 6): a new, emptied, switched or restored destination
gets a correct load on the next run, whatever dlt's local working folder remembers."""

from __future__ import annotations

import random
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from stripe_emulator.server import EmulatorServer
from stripe_promotions import SyncRequest
from tests.conftest import create_database
from tests.reliability.harness import Changes, assert_converged
from tests.support import Warehouse


@pytest.fixture
def changes(stripe_emulator: EmulatorServer) -> Changes:
    stripe_emulator.account.seed(coupons=15, products=10, promotion_codes=25)
    return Changes(stripe_emulator, random.Random(7))


def empty(warehouse: Warehouse, moved_to: Path) -> None:
    """What a user does to start over: move the DuckDB file away, or drop the schemas."""
    if warehouse.name == "duckdb":
        assert warehouse.settings.duckdb_file is not None
        shutil.move(warehouse.settings.duckdb_file, moved_to)
        return
    for schema in ("stripe", "stripe_raw", "stripe_raw_staging"):
        warehouse.rows(f"DROP SCHEMA IF EXISTS {schema} CASCADE; SELECT 1 AS done")


@pytest.mark.parametrize("then", [SyncRequest(), SyncRequest("sync_all")], ids=["run", "sync-all"])
def test_a_new_or_emptied_destination_gets_a_full_correct_load(
    warehouse: Warehouse,
    stripe_emulator: EmulatorServer,
    changes: Changes,
    tmp_path: Path,
    then: SyncRequest,
) -> None:
    warehouse.run()
    changes.make(6)
    warehouse.run()
    changes.make(6)
    empty(warehouse, tmp_path / "elsewhere.duckdb")
    changes.make(6)
    result = warehouse.run(then)
    assert any("a full load" in note for note in result.notes), result.notes
    assert_converged(warehouse, stripe_emulator.account)
    changes.make(6)
    quiet = warehouse.run()  # and incremental again from there
    assert not any("full load" in note for note in quiet.notes)
    assert_converged(warehouse, stripe_emulator.account)


def test_a_destination_restored_from_an_older_backup_continues_from_its_own_state(
    duckdb_warehouse: Warehouse, stripe_emulator: EmulatorServer, changes: Changes, tmp_path: Path
) -> None:
    file = duckdb_warehouse.settings.duckdb_file
    assert file is not None
    duckdb_warehouse.run()
    changes.make(6)
    duckdb_warehouse.run()
    shutil.copy(file, tmp_path / "backup.duckdb")
    changes.make(8)
    duckdb_warehouse.run()  # the local state is now ahead of the backup
    shutil.copy(tmp_path / "backup.duckdb", file)
    changes.make(6)
    result = duckdb_warehouse.run()
    assert any("restored from a backup" in note for note in result.notes), result.notes
    assert_converged(duckdb_warehouse, stripe_emulator.account)


def test_switching_destination_and_back_keeps_both_correct(
    duckdb_warehouse: Warehouse,
    stripe_emulator: EmulatorServer,
    changes: Changes,
    postgres_socket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", create_database(postgres_socket))
    postgres = replace(
        duckdb_warehouse,
        name="postgres",
        settings=replace(duckdb_warehouse.settings, destination="postgres", duckdb_file=None),
    )
    duckdb_warehouse.run()
    changes.make(6)
    first = postgres.run()
    assert any("a full load" in note for note in first.notes), first.notes
    assert_converged(postgres, stripe_emulator.account)
    changes.make(6)
    back = duckdb_warehouse.run()
    assert any("Switched to" in note for note in back.notes), back.notes
    assert_converged(duckdb_warehouse, stripe_emulator.account)
    changes.make(6)
    postgres.run()
    assert_converged(postgres, stripe_emulator.account)
