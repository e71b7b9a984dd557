"""Upgrading a destination written by the previous release (raw shape 1, commit b7dd3bc).

tests/fixtures/raw_shape_1 is a small DuckDB the old code made (its README says how); each test
imports it into a fresh file and runs the current command on it as users do: a subprocess, a
dlt folder that is empty (a new install follows the destination's state), DuckDB.

Not covered: an incremental run against a new emulator. The emulator holds none of the
fixture's objects, and the fixture's events cursor is as old as the fixture: past Stripe's
events retention the run lists everything again and rightly flags every object deleted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from stripe_emulator.server import EmulatorServer
from tests.support import run_command

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "raw_shape_1"
DATABASE = "stripe_pipeline.duckdb"  # the command's default file, in its working folder
OBJECT_TABLES = {"coupon": "coupons", "product": "products", "promotion_code": "promotion_codes"}
RAW_TABLES = (*OBJECT_TABLES.values(), "events", "full_listings", "sync_runs")
DELETION_RANK = 3  # docs/OBSERVATIONS.md: 1 read, 2 event, 3 deletion
# Tombstones that carry no fields: the object's newest observation is now the tombstone itself,
# so its current row's synced_at and observed_via name the deletion (shape 1 named the newest
# read or event). An event deletion was already the event's own observation.
FIELDLESS_SOURCES = ("not_found", "manual", "batch")
NEW_ID = "coupon_soft_deleted_after_upgrade"
# dlt's local state after `sync_destination`: what a machine that ran the old version holds.
RESTORE_LOCAL_STATE = """
import sys, dlt
pipeline = dlt.pipeline(
    "stripe_pipeline", destination=dlt.destinations.duckdb(sys.argv[1]), dataset_name="stripe_raw"
)
pipeline.sync_destination()
assert "deletions" in pipeline.default_schema.tables
"""

Row = dict[str, Any]


def soft_delete(
    database: Path, object_type: str, object_id: str, url: str, requests: int = 0
) -> None:
    """`soft-delete --force` of an unseen id: a run that needs no Stripe but, on the first run
    after the upgrade, the key's own account id (`GET /v1/account`, one request)."""
    args = ("--force", object_id, "--reason", "after the upgrade")
    done = run_command(
        "--api-base",
        url,
        "--quiet",
        "soft-delete",
        "--type",
        object_type,
        *args,
        cwd=database.parent,
    )
    assert done.returncode == 0, done.stderr
    assert f": {requests} Stripe API requests" in done.stdout, done.stdout


def query(database: Path, sql: str, *params: Any) -> list[Row]:
    """Rows of a query, read-only; the file is closed again before the command runs."""
    with duckdb.connect(str(database), read_only=True) as db:
        cursor = db.execute(sql, list(params))
        names = [column[0] for column in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def tables(database: Path, schema: str) -> set[str]:
    """The tables of a schema."""
    sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = ?"
    return {row["table_name"] for row in query(database, sql, schema)}


def snapshot(database: Path, schema: str, names: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Every row of a schema's tables (or of `names`), in a stable order: for "unchanged"."""
    return {
        name: query(database, f"SELECT * FROM {schema}.{name} ORDER BY ALL")
        for name in sorted(names or tables(database, schema))
    }


def by_id(rows: list[Row]) -> dict[str, Row]:
    """Rows keyed by their `id`."""
    return {row["id"]: row for row in rows}


@pytest.fixture
def shape1(tmp_path: Path) -> Path:
    """The fixture imported into a fresh DuckDB file, the command's default one in tmp_path."""
    database = tmp_path / DATABASE
    with duckdb.connect(str(database)) as db:
        db.execute(f"IMPORT DATABASE '{FIXTURE}'")
    return database


def test_the_fixture_is_shape_1_with_a_tombstone_of_every_source(shape1: Path) -> None:
    """The fixture is shape 1, with a tombstone of each source, a patch, a listing, dlt's state."""
    assert {"deletions", "_dlt_pipeline_state", "_dlt_version", "_dlt_loads"} <= tables(
        shape1, "stripe_raw"
    )
    assert tables(shape1, "stripe") == set(OBJECT_TABLES.values())
    sources = {row["source"] for row in query(shape1, "SELECT source FROM stripe_raw.deletions")}
    assert sources == {"event", "not_found", "manual", "batch"}
    columns = {row["column_name"] for row in query(shape1, "DESCRIBE stripe_raw.coupons")}
    assert "_observed_order" in columns and "_observed_rank" not in columns
    patches = "SELECT COUNT(*) AS n FROM stripe_raw.products WHERE _patched_fields IS NOT NULL"
    assert query(shape1, patches)[0]["n"] >= 1
    assert query(shape1, "SELECT started_order FROM stripe_raw.full_listings")
    events = {row["type"] for row in query(shape1, "SELECT type FROM stripe_raw.events")}
    assert {"coupon.updated", "coupon.deleted"} <= events


@pytest.mark.parametrize("local_state", ["empty", "from_the_old_version"])
def test_transform_alone_refuses_shape_1_in_one_line_and_changes_nothing(
    shape1: Path, local_state: str
) -> None:
    """`transform` before a load of the new version: one line saying to run a load; no change."""
    if local_state == "from_the_old_version":
        restored = subprocess.run(
            [sys.executable, "-c", RESTORE_LOCAL_STATE, str(shape1)],
            cwd=shape1.parent,
            env={
                **os.environ,
                "DLT_DATA_DIR": str(shape1.parent / "dlt"),
                "RUNTIME__DLTHUB_TELEMETRY": "false",
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert restored.returncode == 0, restored.stderr
    before = {schema: snapshot(shape1, schema) for schema in ("stripe", "stripe_raw")}
    done = run_command("transform", cwd=shape1.parent)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "run a load" in lines[0], done.stderr
    # OutdatedRawData's words: with no local state, the run reads the destination's first.
    assert "written by an earlier version of this pipeline" in lines[0], lines
    assert {schema: snapshot(shape1, schema) for schema in ("stripe", "stripe_raw")} == before
    assert "deletions" in tables(shape1, "stripe_raw")


def test_a_run_that_needs_no_stripe_migrates_shape_1(
    shape1: Path, stripe_emulator: EmulatorServer
) -> None:
    """A run needing no Stripe but the own account's id migrates: tombstones become rows, all
    ordered, every row the own account's, stripe.* as before, the old cursors adopted."""
    old_current = {
        t: by_id(query(shape1, f"SELECT * FROM stripe.{t}")) for t in OBJECT_TABLES.values()
    }
    old_raw = {t: query(shape1, f"SELECT * FROM stripe_raw.{t}") for t in OBJECT_TABLES.values()}
    tombstones = query(shape1, "SELECT * FROM stripe_raw.deletions")

    soft_delete(shape1, "coupon", NEW_ID, stripe_emulator.url, requests=1)

    assert "deletions" not in tables(shape1, "stripe_raw")
    own = stripe_emulator.account.id
    for table in RAW_TABLES:
        owners = query(shape1, f"SELECT DISTINCT account_id FROM stripe_raw.{table}")
        assert [row["account_id"] for row in owners] in ([own], []), table
    for table in OBJECT_TABLES.values():
        owners = query(shape1, f"SELECT DISTINCT account_id FROM stripe.{table}")
        assert [row["account_id"] for row in owners] == [own], table
    state = json.loads(
        (shape1.parent / "dlt" / "pipelines" / "stripe_pipeline" / "state.json").read_text()
    )
    adopted = state["sources"]["stripe"]["accounts"][own]
    assert adopted["events"]["cursor"] > 0
    assert set(adopted["created"]) == set(OBJECT_TABLES)
    assert_tombstones_are_observations(shape1, tombstones)
    assert_old_observations_kept_in_order(shape1, old_raw)
    assert_every_row_ordered(shape1)
    assert_current_state_as_before(shape1, old_current, tombstones)
    new = by_id(query(shape1, "SELECT * FROM stripe.coupons"))[NEW_ID]
    assert new["is_deleted"] and new["deletion_source"] == "manual"
    assert new["deletion_reason"] == "after the upgrade"


def test_the_migration_happens_once(shape1: Path, stripe_emulator: EmulatorServer) -> None:
    """After the upgrade, the transforms change nothing and a load adds only its own row."""
    old_current = {
        t: by_id(query(shape1, f"SELECT * FROM stripe.{t}")) for t in OBJECT_TABLES.values()
    }
    tombstones = query(shape1, "SELECT * FROM stripe_raw.deletions")
    soft_delete(shape1, "coupon", NEW_ID, stripe_emulator.url, requests=1)
    raw, current = snapshot(shape1, "stripe_raw", RAW_TABLES), snapshot(shape1, "stripe")

    done = run_command("transform", cwd=shape1.parent)
    assert done.returncode == 0, done.stderr
    assert snapshot(shape1, "stripe_raw", RAW_TABLES) == raw
    assert snapshot(shape1, "stripe") == current

    soft_delete(shape1, "product", "prod_soft_deleted_later", stripe_emulator.url)
    after = snapshot(shape1, "stripe_raw", RAW_TABLES)
    assert {t: rows for t, rows in after.items() if t != "products"} == {
        t: rows for t, rows in raw.items() if t != "products"
    }
    added = [row for row in after["products"] if row not in raw["products"]]
    assert [row["id"] for row in added] == ["prod_soft_deleted_later"]
    assert len(after["products"]) == len(raw["products"]) + 1
    products = by_id(query(shape1, "SELECT * FROM stripe.products"))
    assert products.pop("prod_soft_deleted_later")["is_deleted"]
    assert products == by_id(current["products"])
    for table in ("coupons", "promotion_codes"):
        assert query(shape1, f"SELECT * FROM stripe.{table} ORDER BY ALL") == current[table]
    assert_current_state_as_before(
        shape1, old_current, tombstones, new_ids=frozenset({NEW_ID, "prod_soft_deleted_later"})
    )
    stored = "SELECT schema FROM stripe_raw._dlt_version ORDER BY version DESC LIMIT 1"
    assert '"deletions"' not in query(shape1, stored)[0]["schema"]


def assert_tombstones_are_observations(database: Path, tombstones: list[Row]) -> None:
    """Each old tombstone is a `_deleted` row of its object: source, reason, time, rank 3."""
    # Rank 3 (deletion) wins its second, as a shape-1 tombstone did; it carries no fields.
    assert tombstones
    for stone in tombstones:
        table = OBJECT_TABLES[stone["object_type"]]
        rows = query(
            database,
            f"SELECT * FROM stripe_raw.{table} WHERE id = ? AND _observation_key = ?",
            stone["object_id"],
            f"deletion:{stone['_observation_key']}",
        )
        assert len(rows) == 1, stone
        (row,) = rows
        via = "not_found" if stone["source"] == "not_found" else stone["_observed_via"]
        assert row["_deleted"] is True, row
        assert row["_deletion_source"] == stone["source"], row
        assert row["_deletion_reason"] == stone["reason"], row
        assert row["_deleted_at"] == stone["deleted_at"], row
        assert row["_observed_at"] == stone["_observed_at"], row
        assert row["_observed_rank"] == DELETION_RANK, row
        assert row["_observed_via"] == via, row
        assert row["_patched_fields"] == "[]", row
    deleted = sum(
        query(database, f"SELECT COUNT(*) AS n FROM stripe_raw.{t} WHERE _deleted")[0]["n"]
        for t in OBJECT_TABLES.values()
    )
    assert deleted == len(tombstones) + 1  # and the new soft delete


def assert_old_observations_kept_in_order(database: Path, old_raw: dict[str, list[Row]]) -> None:
    """Every old observation is kept, not deleted, and ranked as `_observed_order` ranked it."""
    for table, rows in old_raw.items():
        new = query(
            database,
            f"SELECT id, _observation_key, _observed_at, _deleted FROM stripe_raw.{table} "
            "WHERE _observed_order IS NOT NULL",
        )
        assert sorted((r["id"], r["_observation_key"], r["_observed_at"], False) for r in rows) == (
            sorted((r["id"], r["_observation_key"], r["_observed_at"], r["_deleted"]) for r in new)
        )
        swapped = query(
            database,
            f"""
            SELECT a.id, a._observation_key AS older, b._observation_key AS newer
            FROM stripe_raw.{table} AS a JOIN stripe_raw.{table} AS b ON a.id = b.id
            WHERE a._observed_order IS NOT NULL AND b._observed_order IS NOT NULL
              AND (a._observed_at < b._observed_at
                   OR (a._observed_at = b._observed_at AND a._observed_order < b._observed_order))
              AND NOT (a._observed_at < b._observed_at
                   OR (a._observed_at = b._observed_at AND a._observed_rank < b._observed_rank)
                   OR (a._observed_at = b._observed_at AND a._observed_rank = b._observed_rank
                       AND a._observed_sequence < b._observed_sequence))
            """,
        )
        assert swapped == [], (table, swapped)


def assert_every_row_ordered(database: Path) -> None:
    """No object row lacks rank, sequence or `_deleted`; no listing lacks `started_sequence`."""
    for table in OBJECT_TABLES.values():
        unordered = query(
            database,
            f"SELECT id, _observation_key FROM stripe_raw.{table} WHERE _observed_rank IS NULL "
            "OR _observed_sequence IS NULL OR _deleted IS NULL",
        )
        assert unordered == [], (table, unordered)
    markers = "SELECT listing_id FROM stripe_raw.full_listings WHERE started_sequence IS NULL"
    assert query(database, markers) == []


def assert_current_state_as_before(
    database: Path,
    old: dict[str, dict[str, Row]],
    tombstones: list[Row],
    new_ids: frozenset[str] = frozenset({NEW_ID}),
) -> None:
    """stripe.* equal the old tables on their columns, bar a fieldless tombstone's last sighting."""
    # An object whose newest observation is a 404, manual or batch tombstone: its synced_at and
    # observed_via now name that deletion (shape 1 named the newest read or event): documented.
    newest_stone: dict[str, Row] = {}
    for stone in sorted(tombstones, key=lambda s: (s["_observed_at"], s["_observed_order"])):
        newest_stone[stone["object_id"]] = stone
    renamed = 0
    for table, before in old.items():
        now = by_id(query(database, f"SELECT * FROM stripe.{table}"))
        assert set(now) - set(before) <= new_ids and set(before) <= set(now), table
        for object_id, row in before.items():
            expected = dict(row)
            if row["is_deleted"] and row["deletion_source"] in FIELDLESS_SOURCES:
                stone = newest_stone[object_id]
                assert stone["source"] == row["deletion_source"]
                expected["synced_at"] = datetime.fromtimestamp(stone["_observed_at"], UTC)
                expected["observed_via"] = row["deletion_source"]
                assert expected["synced_at"] != row["synced_at"], "the fixture shows the change"
                renamed += 1
            assert {c: now[object_id][c] for c in row} == expected, (table, object_id)
    assert renamed == len(FIELDLESS_SOURCES)  # the fixture has one of each
