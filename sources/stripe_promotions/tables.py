"""The raw tables: their hints, and routing rows to them from any resource.

Object tables (`coupons`, `products`, `promotion_codes`) hold one row per observation
(rows.py); beside them: the events audit, full-listing markers and run markers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import dlt
import pyarrow as pa
from dlt.common.schema.typing import C_DLT_LOAD_ID, TColumnSchema

from .rows import ARROW_TYPES, BIGINT, BOOL, JSON, TEXT, column_hints, object_table_hints
from .settings import OBJECT_TYPES, ObjectType

# Whose object a row is (Stripe Connect): the key's own account id, or a connected account's.
ACCOUNT_COLUMN: Final = "account_id"
EVENT_COLUMNS: Final = {
    ACCOUNT_COLUMN: TEXT,
    "id": TEXT,
    "type": TEXT,
    "object_type": TEXT,
    "object_id": TEXT,
    "created": BIGINT,
    "api_version": TEXT,
    "livemode": BOOL,
    "request_id": TEXT,
    "idempotency_key": TEXT,
    "previous_attributes": JSON,
    "_observed_via": TEXT,
}
LISTING_COLUMNS: Final = {
    ACCOUNT_COLUMN: TEXT,
    "listing_id": TEXT,
    "object_type": TEXT,
    "started_at": BIGINT,  # Stripe's clock before the first page: older observations are gone
    # The sequence at the start (observation.sequence_now), for reads in the same second
    "started_sequence": BIGINT,
    "completed_at": BIGINT,
    "created_from": BIGINT,  # only objects created at or after this were listed
    "objects": BIGINT,
}
RUN_COLUMNS: Final = {
    ACCOUNT_COLUMN: TEXT,
    "run_id": TEXT,
    "resource": TEXT,
    "mode": TEXT,
    "server_time": BIGINT,  # Stripe's clock at the end: "as of" for expiry in the transforms
    "requests": BIGINT,
    "rows": BIGINT,
    "note": TEXT,
}

EVENTS_TABLE: Final = "events"
LISTINGS_TABLE: Final = "full_listings"
RUNS_TABLE: Final = "sync_runs"
TABLE_COLUMNS: Final = {
    EVENTS_TABLE: EVENT_COLUMNS,
    LISTINGS_TABLE: LISTING_COLUMNS,
    RUNS_TABLE: RUN_COLUMNS,
}
PRIMARY_KEYS: Final = {
    EVENTS_TABLE: (ACCOUNT_COLUMN, "id"),
    LISTINGS_TABLE: ("listing_id",),
    RUNS_TABLE: ("run_id", "resource", ACCOUNT_COLUMN),
}
# Bumped whenever a raw table gains columns: the next run creates them even if it loads
# nothing into that table (the transforms read every column). Shape 2: docs/OBSERVATIONS.md;
# shape 3 adds `account_id` to every table and key; shape 4 dlt's `_dlt_load_id`.
RAW_SHAPE: Final = 4
# dlt's load id on every raw row, for the transforms to apply only the loads they have not
# (the pipeline turns it on for Arrow tables); nullable, so a table from before gains it.
LOAD_ID_HINT: Final[dict[str, TColumnSchema]] = {
    C_DLT_LOAD_ID: {"data_type": "text", "nullable": True}
}
# An object table's key: the account, the object and the observation slot it fills.
OBJECT_KEY: Final = (ACCOUNT_COLUMN, "id", "_observation_key")


def object_hints(object_type: ObjectType) -> Any:
    """Hints that route a table from any resource into an object table."""
    return dlt.mark.make_hints(
        table_name=object_type.table,
        write_disposition="merge",
        primary_key=list(OBJECT_KEY),
        columns={**object_table_hints(object_type.name), **LOAD_ID_HINT},
    )


def hints_for(table_name: str) -> Any:
    """Hints for any raw table by name: merge on its key, declared columns."""
    for object_type in OBJECT_TYPES.values():
        if object_type.table == table_name:
            return object_hints(object_type)
    return dlt.mark.make_hints(
        table_name=table_name,
        write_disposition="merge",
        primary_key=list(PRIMARY_KEYS[table_name]),
        columns={**column_hints(TABLE_COLUMNS[table_name]), **LOAD_ID_HINT},
    )


def routed(table: pa.Table, table_name: str, account_id: str | None) -> Any:
    """An Arrow table of one account's rows sent to a raw table with that table's hints (any
    resource may send it); `account_id` fills the table's first column."""
    if ACCOUNT_COLUMN in table.column_names:
        table = table.drop_columns([ACCOUNT_COLUMN])
    owner = pa.repeat(pa.scalar(account_id, pa.string()), table.num_rows)
    table = table.add_column(0, ACCOUNT_COLUMN, owner)
    return dlt.mark.with_hints(table, hints_for(table_name), create_table_variant=True)


def plain_table(table_name: str, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows of one of the tables besides objects as Arrow, with the declared types."""
    columns = TABLE_COLUMNS[table_name]
    return pa.table(
        {
            name: pa.array([row.get(name) for row in rows], ARROW_TYPES[kind])
            for name, kind in columns.items()
        }
    )


def with_table(table_name: str, rows: Sequence[Mapping[str, Any]], account_id: str | None) -> Any:
    """One account's rows for one of the tables besides objects, typed and routed."""
    return routed(plain_table(table_name, rows), table_name, account_id)
