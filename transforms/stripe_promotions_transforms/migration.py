"""Bring a `stripe_raw` written by an earlier version to the current shape, before the
transforms read it (in their transaction: a failure leaves both as they were).

Shape 3 (0.3) adds `account_id` to every raw table and key (Stripe Connect): rows written
before were the key's own account's, and get its id.

Shape 1 (until 0.2) kept deletions in a table of their own and ordered observations within a
second by one number, `_observed_order` (local ms for reads, about a million times more for
events). Shape 2 (docs/OBSERVATIONS.md) makes every deletion an observation of the object and
orders by (`_observed_rank`, `_observed_sequence`). dlt has already added the new columns by
the time this runs: the load that precedes the transforms creates them.
"""

from __future__ import annotations

from typing import Any

import dlt

# Shape 1's `_observed_order` at or above this was an event's (run start ms * 1e6 + position)
# or a re-read after events; below it, a read's local ms.
EVENT_ORDERS = 1_000_000_000_000_000
LEGACY_DELETIONS = "deletions"
NEW_COLUMNS = ("_observed_rank", "_observed_sequence", "_deleted")
# Rank.READ, Rank.EVENT and Rank.DELETION (stripe_promotions.observation): the transforms'
# package does not import the source's.
READ, EVENT, DELETION = 1, 2, 3


class OutdatedRawData(Exception):
    """`stripe_raw` has the earlier shape and no load has added the new columns yet."""


def needs_migration(client: Any, dataset: str) -> bool:
    """Whether the raw dataset still has shape 1 (its `deletions` table)."""
    rows = client.execute_sql(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s "
        "AND table_name = %s",
        dataset,
        LEGACY_DELETIONS,
    )
    return bool(rows and rows[0][0])


def migrate(
    client: Any, dataset: str, object_tables: dict[str, str], columns: dict[str, set[str]]
) -> None:
    """Shape 1 → 2, in the caller's transaction. `object_tables` maps raw table to object type;
    `columns` the raw tables' columns as dlt knows them."""
    missing = [t for t in object_tables if not set(NEW_COLUMNS) <= columns.get(t, set())]
    if missing:
        raise OutdatedRawData(
            f"{dataset} was written by an earlier version of this pipeline: run a load "
            "(python pipelines/stripe_pipeline.py) to bring it to the current shape first."
        )
    order = "COALESCE(_observed_order, 0)"
    sequence = f"CASE WHEN {order} >= {EVENT_ORDERS} THEN {order} ELSE {order} * 1000000 END"
    for table, object_type in object_tables.items():
        client.execute_sql(
            f"""
            UPDATE {dataset}.{table} SET
                _observed_rank = CASE WHEN {order} >= {EVENT_ORDERS} THEN {EVENT} ELSE {READ} END,
                _observed_sequence = {sequence},
                _deleted = FALSE
            WHERE _observed_rank IS NULL
            """
        )
        # A tombstone of shape 1 won every tie in its second: Rank.DELETION keeps that.
        client.execute_sql(
            f"""
            INSERT INTO {dataset}.{table} (
                id, _observed_at, _observed_rank, _observed_sequence, _observed_via,
                _observation_key, _api_version, _patched_fields, _deleted, _deleted_at,
                _deletion_source, _deletion_reason
            )
            SELECT
                object_id, _observed_at, {DELETION}, {sequence},
                CASE WHEN source = 'not_found' THEN 'not_found' ELSE _observed_via END,
                'deletion:' || _observation_key, _api_version, '[]', TRUE, deleted_at,
                source, reason
            FROM {dataset}.{LEGACY_DELETIONS}
            WHERE object_type = '{object_type}'
            """
        )
    client.execute_sql(
        f"UPDATE {dataset}.full_listings SET started_sequence = COALESCE(started_order, 0) "
        "* 1000000 WHERE started_sequence IS NULL"
    )
    client.execute_sql(f"DROP TABLE {dataset}.{LEGACY_DELETIONS}")


def forget_legacy_tables(pipeline: dlt.Pipeline) -> None:
    """Drop shape 1's tables from dlt's schema too (after the migration committed)."""
    schema = pipeline.default_schema
    if LEGACY_DELETIONS in schema.tables:
        schema.drop_tables([LEGACY_DELETIONS])
        pipeline.schemas.save_schema(schema)


# The keys of shape 2, without `account_id`: a row the first load of shape 3 wrote again
# under its account's id is the same row.
SHAPE_2_KEYS = {
    "events": ("id",),
    "full_listings": ("listing_id",),
    "sync_runs": ("run_id", "resource"),
}
OBJECT_KEY = ("id", "_observation_key")
ACCOUNT = "account_id"


def needs_account_ids(client: Any, table: str) -> bool:
    """Whether the transforms have not run since the raw tables gained `account_id`: the
    current-state table `stripe.<table>` is missing or has no `account_id` yet."""
    rows = client.execute_sql(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'stripe' AND table_name = %s",
        table,
    )
    columns = {str(row[0]) for row in rows or []}
    return not columns or ACCOUNT not in columns


def fill_account_ids(
    client: Any, dataset: str, object_tables: dict[str, str], own_account: str | None
) -> None:
    """Shape 2 → 3, in the caller's transaction: rows without an account become the key's
    own account's, and those the load after the upgrade wrote again under it go."""
    tables = {**{t: OBJECT_KEY for t in object_tables}, **SHAPE_2_KEYS}
    found = client.execute_sql(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = %s "
        "AND column_name = %s",
        dataset,
        ACCOUNT,
    )
    present = {str(row[0]) for row in found or []}
    for table, key in tables.items():
        if table not in present:
            continue
        unowned = client.execute_sql(
            f"SELECT COUNT(*) FROM {dataset}.{table} WHERE {ACCOUNT} IS NULL"
        )
        if not unowned or not unowned[0][0]:
            continue
        if own_account is None:
            raise OutdatedRawData(
                f"{dataset} was written before accounts: run a load "
                "(python pipelines/stripe_pipeline.py) to learn the key's own account first."
            )
        columns = ", ".join(key)
        client.execute_sql(
            f"DELETE FROM {dataset}.{table} WHERE {ACCOUNT} IS NULL AND ({columns}) IN "
            f"(SELECT {columns} FROM {dataset}.{table} WHERE {ACCOUNT} = %s)",
            own_account,
        )
        client.execute_sql(
            f"UPDATE {dataset}.{table} SET {ACCOUNT} = %s WHERE {ACCOUNT} IS NULL", own_account
        )
