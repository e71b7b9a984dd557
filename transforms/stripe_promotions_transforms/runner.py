"""Apply the SQL transforms to the pipeline's destination, in one transaction: a failure
leaves the tables as they were.

The SQL is written once, in DuckDB's dialect; sqlglot expands `*` from the raw tables' columns
(taken from the pipeline's dlt schema, so new Stripe fields flow through) and transpiles it for
the destination. A rebuild creates every table beside the old one, then swaps; a usual run
recomputes only the objects that moved (incremental.py) and replaces their rows in place.
Beside each current-state table `stripe.<table>`, its history `stripe.<table>_history` (when
the SQL folder has `<table>_history.sql`) and, where the destination has table functions, an
"as of" helper `stripe.<table>_as_of(ts)` (docs/HISTORY.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dlt
import sqlglot
from sqlglot import exp
from sqlglot.optimizer.qualify import qualify

from .incremental import (
    LOAD_ID,
    REFERENCES,
    STATE_TABLE,
    Plan,
    changed_objects,
    inputs_digest,
    moved_references,
    plan,
    record,
    scalar,
)
from .migration import (
    OutdatedRawData,
    fill_account_ids,
    forget_legacy_tables,
    migrate,
    needs_account_ids,
    needs_migration,
)

HERE = Path(__file__).parent
SCHEMA = "stripe"
RAW = "stripe_raw"  # the dataset name the SQL is written against
# The raw tables besides the object tables that the SQL reads (events: the history's
# changed_fields, from `previous_attributes`).
MARKER_TABLES = ("full_listings", "sync_runs", "events")
DIALECTS = {
    "duckdb": "duckdb",
    "motherduck": "duckdb",
    "postgres": "postgres",
    "snowflake": "snowflake",
    "bigquery": "bigquery",
}
DLT_TYPES = {
    "text": "TEXT",
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "bool": "BOOLEAN",
    "json": "JSON",
    "timestamp": "TIMESTAMPTZ",
    "date": "DATE",
    "decimal": "DECIMAL",
    "wei": "DECIMAL",
    "binary": "BLOB",
    "time": "TIME",
}
# An object: its account (Stripe Connect) and its id.
KEY = ("account_id", "id")
# A raw object row's list of the fields it carries (a batch patch, a tombstone); NULL: all.
PATCHED = "_patched_fields"
# The bookkeeping columns of an object row the SQL reads (docs/OBSERVATIONS.md); others that
# start with `_` (dlt's, or ones earlier versions wrote) stay out of the current-state tables.
OBSERVATION_COLUMNS = (
    "_observed_at",
    "_observed_rank",
    "_observed_sequence",
    "_observed_via",
    "_observation_key",
    "_api_version",
    PATCHED,
    "_deleted",
    "_deleted_at",
    "_deletion_source",
    "_deletion_reason",
)
# The history tables' "as of" helpers, by dialect: the state of every object at `ts`.
AS_OF_PREDICATE = "valid_from <= ts AND (valid_to IS NULL OR valid_to > ts)"
AS_OF = {
    "duckdb": "CREATE OR REPLACE MACRO {schema}.{name}(ts) AS TABLE "
    "SELECT * FROM {schema}.{table} WHERE " + AS_OF_PREDICATE,
    "postgres": "CREATE OR REPLACE FUNCTION {schema}.{name}(ts TIMESTAMPTZ) "
    "RETURNS SETOF {schema}.{table} LANGUAGE sql STABLE AS $$ "
    "SELECT * FROM {schema}.{table} WHERE " + AS_OF_PREDICATE + " $$",
}
# A PostgreSQL function returning a table's rows depends on it: dropped before the swap.
DROP_AS_OF = {"postgres": "DROP FUNCTION IF EXISTS {schema}.{name}(TIMESTAMPTZ)"}
# Columns a change in which does not count as an update in the summary.
BOOKKEEPING = {"synced_at", "observed_via", "valid", "status", "is_expired", "is_redeemable"}


class TransformError(Exception):
    """The transforms could not run; the previous tables are untouched."""


@dataclass
class TableChanges:
    """What one run of the transforms changed in a current-state table."""

    table: str
    rows: int
    new: int
    updated: int
    deleted: int  # rows deleted since the previous run
    deleted_rows: int = 0  # rows flagged deleted in the table now
    recomputed: int = 0  # objects whose rows this run computed (all of them in a rebuild)


def dialect_of(pipeline: dlt.Pipeline) -> str:
    """sqlglot's name for the pipeline's destination."""
    name = pipeline.destination.destination_name
    if name not in DIALECTS:
        raise TransformError(
            f"No SQL dialect for destination {name!r}: the transforms support "
            f"{', '.join(sorted(DIALECTS))}."
        )
    return DIALECTS[name]


def raw_schema(pipeline: dlt.Pipeline, object_tables: Iterable[str]) -> dict[str, dict[str, str]]:
    """Columns of the raw tables the SQL reads, from the dlt schema: an object table's fields
    and OBSERVATION_COLUMNS (not dlt's `_dlt_*`, nor columns earlier versions wrote)."""
    tables: dict[str, Any] = pipeline.default_schema.tables if pipeline.default_schema_name else {}
    raw_tables = (*object_tables, *MARKER_TABLES)
    missing = [t for t in raw_tables if t not in tables]
    if missing:
        raise TransformError(
            f"The raw dataset has no {', '.join(missing)} yet: run a load first "
            "(python pipelines/stripe_pipeline.py)."
        )
    return {
        table: {
            name: DLT_TYPES.get(str(column.get("data_type")), "TEXT")
            for name, column in tables[table]["columns"].items()
            if column.get("data_type")
            and (not name.startswith("_") or table in MARKER_TABLES or name in OBSERVATION_COLUMNS)
            and not name.startswith("_dlt_")
        }
        for table in raw_tables
    }


def build_sql(
    table: str,
    object_type: str,
    schema: dict[str, Any],
    dialect: str,
    dataset: str,
    names: dict[str, str] | None = None,
    sql_dir: Path = HERE,
    history: bool = False,
    only: str | None = None,
) -> exp.Query:
    """One current-state table's SELECT (`history`: its history table's), stars expanded,
    tables renamed, for `dialect`; of the objects in `stripe.<only>` alone when given."""
    columns = schema[RAW][table]
    # Only the columns the SQL knows: a column an earlier version wrote stays out.
    listed = ", ".join(f'"{name}"' for name in columns)
    where = (
        f" WHERE ({', '.join(KEY)}) IN (SELECT {', '.join(KEY)} FROM {SCHEMA}.{only})"
        if only
        else ""
    )
    rows = f"(SELECT {listed} FROM {RAW}.{table}{where}) AS {table}"
    shared = (sql_dir / ("_history.sql" if history else "_current_state.sql")).read_text()
    shared = shared.replace(f"{RAW}.{{raw_table}}", rows).replace("{raw_table}", table)
    shared = shared.replace("{object_type}", object_type)
    for placeholder, sql in (history_field_lists if history else field_lists)(columns).items():
        shared = shared.replace(placeholder, sql)
    own = (sql_dir / f"{table}.sql").read_text()
    if history:  # <table>_history.sql derives its columns with <table>.sql, where it says so
        own = (sql_dir / f"{table}_history.sql").read_text().replace(f"{{{table}.sql}}", own)
    text = shared + "\n" + own
    tree = qualify(
        sqlglot.parse_one(text, read="duckdb"),
        schema=schema,
        dialect="duckdb",
        expand_stars=True,
        quote_identifiers=False,
        validate_qualify_columns=False,
    )
    for node in tree.find_all(exp.Table):
        if node.db == RAW and dataset != RAW:
            node.set("db", exp.to_identifier(dataset))
        elif node.db == SCHEMA and names and node.name in names:
            node.set("this", exp.to_identifier(names[node.name]))
    assert isinstance(tree, exp.Query)
    return tree


def field_lists(columns: Iterable[str]) -> dict[str, str]:
    """The per-field lists `_current_state.sql` leaves to the runner, from the raw table's
    columns (fields Stripe adds included): each field from the newest observation carrying it."""
    carriers, values = [], []
    key = ", ".join(KEY)
    for name in columns:
        if name in KEY or name.startswith("_"):  # the key, and the observation's own columns
            values.append(f'"{name}"')
            continue
        carries = f"""{PATCHED} IS NULL OR STRPOS({PATCHED}, '"{name}"') > 0"""
        carriers.append(
            f"CAST(MIN(CASE WHEN {carries} THEN observation_rank END) OVER (PARTITION BY {key}) "
            f'AS INT) AS "{name}__carrier"'
        )
        values.append(
            f'NTH_VALUE("{name}", "{name}__carrier") OVER (PARTITION BY {key} '
            f"ORDER BY observation_rank ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) "
            f'AS "{name}"'
        )
    return {"{field_carriers}": ", ".join(carriers), "{field_values}": ", ".join(values)}


def history_field_lists(columns: Iterable[str]) -> dict[str, str]:
    """The per-field lists `_history.sql` leaves to the runner: each observation's fields
    filled from the newest observation so far carrying them (before any, the first one that
    does), the fields that differ from the observation before, and those an event's
    `previous_attributes` names."""
    carriers, values, compared, named = [], [], [], []
    key = ", ".join(KEY)
    for name in columns:
        if name in KEY or name.startswith("_"):
            values.append(f'"{name}"')
            continue
        carries = f"""{PATCHED} IS NULL OR STRPOS({PATCHED}, '"{name}"') > 0"""
        carriers.append(
            f"MAX(CASE WHEN {carries} THEN observation_number END) OVER (PARTITION BY {key} "
            f'ORDER BY observation_number ROWS UNBOUNDED PRECEDING) AS "{name}__carrier", '
            f"CAST(MIN(CASE WHEN {carries} THEN observation_number END) OVER (PARTITION BY "
            f'{key}) AS INT) AS "{name}__first"'
        )
        values.append(
            f'CASE WHEN "{name}__carrier" IS NULL THEN NTH_VALUE("{name}", "{name}__first") '
            f"OVER (PARTITION BY {key} ORDER BY observation_number ROWS BETWEEN UNBOUNDED "
            f'PRECEDING AND UNBOUNDED FOLLOWING) ELSE FIRST_VALUE("{name}") OVER (PARTITION '
            f'BY {key}, "{name}__carrier" ORDER BY observation_number) END AS "{name}"'
        )
        compared.append(
            f"""CASE WHEN "{name}" IS DISTINCT FROM LAG("{name}") OVER w """
            f"""THEN ',"{name}"' ELSE '' END"""
        )
        said = " OR ".join(
            f"(CAST(e.previous_attributes AS JSON) -> '$.{path}') IS NOT NULL"
            for path in event_paths(name)
        )
        named.append(f"""CASE WHEN {said} THEN ',"{name}"' ELSE '' END""")
    return {
        "{field_carriers}": ", ".join(carriers) or "NULL AS no_fields",
        "{field_values}": ", ".join(values),
        "{compared_fields}": " || ".join(compared) or "''",
        "{event_fields}": " || ".join(named) or "''",
    }


def event_paths(column: str) -> tuple[str, ...]:
    """Where an event's `previous_attributes` names a column: a promotion code's coupon_id,
    promotion_type and restrictions_* come from `coupon`/`promotion` and `restrictions`."""
    if column == "coupon_id":
        return ("coupon", "promotion.coupon")
    if column == "promotion_type":
        return ("promotion.type",)
    if column.startswith("restrictions_"):
        return ("restrictions." + column.removeprefix("restrictions_"),)
    return (column,)


def run_transforms(
    pipeline: dlt.Pipeline,
    object_tables: Mapping[str, str],
    sql_dir: Path = HERE,
    own_account: str | None = None,
    full: bool = False,
) -> list[TableChanges]:
    """Bring one current-state table per object table (raw table name → object type, in
    build order: promotion_codes reads stripe.coupons), and its history, up to date with the
    raw dataset; report what changed in the current-state tables.

    A run recomputes only the objects something moved for since the last one (incremental.py);
    `full`, a first run, new SQL or new raw columns rebuild everything. Either way in one
    transaction, with the same result. `sql_dir` holds the SQL files (this folder by default;
    tests point it at altered copies). A raw dataset of an earlier shape is migrated first, in
    the same transaction; rows from before accounts get `own_account`, the key's own account id.
    """
    dialect = dialect_of(pipeline)
    raw = raw_schema(pipeline, object_tables)
    if any(KEY[0] not in columns for columns in raw.values()):
        raise TransformError(
            f"{pipeline.dataset_name} was written by an earlier version of this pipeline: run "
            "a load (python pipelines/stripe_pipeline.py) to bring it to the current shape first."
        )
    dataset = pipeline.dataset_name
    histories = {
        t: f"{t}_history" for t in object_tables if (sql_dir / f"{t}_history.sql").exists()
    }
    build = Builder(dict(object_tables), histories, {RAW: raw}, dialect, dataset, sql_dir)
    digest = inputs_digest(sql_dir, raw)
    with pipeline.sql_client() as client:
        client.execute_sql(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        existing = _existing_tables(client, SCHEMA)
        migrating = needs_migration(client, dataset)
        unowned = needs_account_ids(client, next(iter(object_tables)))
        missing = {*object_tables, *histories.values(), STATE_TABLE} - existing
        known = pipeline.default_schema.tables
        with client.begin_transaction():
            try:
                if migrating:
                    tables = (*object_tables, *MARKER_TABLES)
                    columns = {t: set(known[t]["columns"]) for t in tables}
                    migrate(client, dataset, dict(object_tables), columns)
                if unowned:
                    fill_account_ids(client, dataset, dict(object_tables), own_account)
            except OutdatedRawData as outdated:
                raise TransformError(str(outdated)) from None
            unlabelled = any(LOAD_ID not in known[t]["columns"] for t in raw)
            reason = (
                "asked"
                if full
                else "migration"
                if migrating or unowned
                else "missing tables"
                if missing
                else "raw rows without load ids"
                if unlabelled
                else None
            )
            work = plan(client, SCHEMA, dataset, digest, reason)
            if work.full:
                changes = build.everything(client, existing)
            else:
                changes = build.changed(client, work)
            record(client, SCHEMA, work, digest)
    if migrating:
        forget_legacy_tables(pipeline)
    return changes


@dataclass
class Builder:
    """Builds the tables: all of them, or the objects a plan says moved."""

    object_tables: dict[str, str]  # raw table → object type, in build order
    histories: dict[str, str]  # raw table → its history table (where the SQL has one)
    schema: dict[str, Any]  # sqlglot's schema: the raw columns, then the tables built
    dialect: str
    dataset: str
    sql_dir: Path

    def outputs(self, table: str) -> list[str]:
        """A raw table's current-state table, then its history."""
        return [table, *([self.histories[table]] if table in self.histories else [])]

    def build(
        self, client: Any, name: str, names: dict[str, str] | None, only: str | None = None
    ) -> list[str]:
        """CREATE `stripe.<name>__building` (current state or history), restricted to the
        objects in `stripe.<only>` when given; its columns."""
        raw_table = name.removesuffix("_history")
        tree = build_sql(
            raw_table,
            self.object_tables[raw_table],
            self.schema,
            self.dialect,
            self.dataset,
            names,
            self.sql_dir,
            history=name != raw_table,
            only=only,
        )
        self.schema.setdefault(SCHEMA, {})[name] = {c: "TEXT" for c in tree.named_selects}
        building = f"{SCHEMA}.{name}__building"
        client.execute_sql(f"DROP TABLE IF EXISTS {building}")
        client.execute_sql(f"CREATE TABLE {building} AS {tree.sql(dialect=self.dialect)}")
        return list(tree.named_selects)

    def everything(self, client: Any, existing: set[str]) -> list[TableChanges]:
        """Rebuild every table beside the old ones, then swap them in."""
        outputs = [name for table in self.object_tables for name in self.outputs(table)]
        staged = {name: f"{name}__building" for name in outputs}
        changes = []
        for table in self.object_tables:
            for name in self.outputs(table):
                columns = self.build(client, name, staged)
                if name == table:
                    changes.append(_changes(client, table, table in existing, columns))
        helpers = {f"{t}_as_of": history for t, history in self.histories.items()}
        if self.dialect in DROP_AS_OF:
            for helper in helpers:
                client.execute_sql(DROP_AS_OF[self.dialect].format(schema=SCHEMA, name=helper))
        for name, building in staged.items():
            client.execute_sql(f"DROP TABLE IF EXISTS {SCHEMA}.{name}")
            client.execute_sql(f"ALTER TABLE {SCHEMA}.{building} RENAME TO {name}")
        if self.dialect in AS_OF:
            for helper, history in helpers.items():
                sql = AS_OF[self.dialect].format(schema=SCHEMA, name=helper, table=history)
                client.execute_sql(sql)
        totals = [_totals(client, change) for change in changes]
        return [replace(change, recomputed=change.rows) for change in totals]

    def changed(self, client: Any, work: Plan) -> list[TableChanges]:
        """Recompute the objects that moved, in place: delete their rows, insert the new."""
        changes: list[TableChanges] = []
        moved: dict[str, str] = {}
        scratch: list[str] = []
        tables_known = False
        for table, object_type in self.object_tables.items():
            changed = f"{table}__changed"
            scratch.append(changed)
            reference = REFERENCES.get(table, (None, None))[1]
            select = changed_objects(
                table, object_type, SCHEMA, self.dataset, work, moved.get(reference or "")
            )
            self.execute(client, f"CREATE TABLE {SCHEMA}.{changed} AS {select}", changed)
            self.schema.setdefault(SCHEMA, {})[changed] = {"account_id": "TEXT", "id": "TEXT"}
            count = scalar(client, f"SELECT COUNT(*) FROM {SCHEMA}.{changed}")
            if not count:
                changes.append(_totals(client, TableChanges(table, 0, 0, 0, 0)))
                continue
            if not tables_known:  # once, and only when something is built
                self.know_built_tables(client)
                tables_known = True
            built = {
                name: self.build(client, name, None, only=changed) for name in self.outputs(table)
            }
            if any(reference == table for _, reference in REFERENCES.values()):
                moved[table] = f"{table}__moved"
                scratch.append(moved[table])
                select = moved_references(SCHEMA, table, self.histories.get(table))
                self.execute(
                    client, f"CREATE TABLE {SCHEMA}.{moved[table]} AS {select}", moved[table]
                )
            changes.append(replace(_changes(client, table, True, built[table]), recomputed=count))
            for name, columns in built.items():
                listed = ", ".join(columns)
                client.execute_sql(
                    f"DELETE FROM {SCHEMA}.{name} WHERE (account_id, id) IN "
                    f"(SELECT account_id, id FROM {SCHEMA}.{changed})"
                )
                client.execute_sql(
                    f"INSERT INTO {SCHEMA}.{name} ({listed}) "
                    f"SELECT {listed} FROM {SCHEMA}.{name}__building"
                )
                client.execute_sql(f"DROP TABLE {SCHEMA}.{name}__building")
            changes[-1] = _totals(client, changes[-1])
        for name in scratch:
            client.execute_sql(f"DROP TABLE IF EXISTS {SCHEMA}.{name}")
        return changes

    def know_built_tables(self, client: Any) -> None:
        """The current-state and history tables' columns as they are, for sqlglot to expand
        the SQL that reads them (promotion_codes.sql reads stripe.coupons)."""
        for table in self.object_tables:
            for name in self.outputs(table):
                self.schema.setdefault(SCHEMA, {})[name] = dict.fromkeys(
                    _columns(client, name), "TEXT"
                )

    def execute(self, client: Any, sql: str, name: str) -> None:
        """Run one of incremental.py's statements (DuckDB's dialect) on the destination."""
        client.execute_sql(f"DROP TABLE IF EXISTS {SCHEMA}.{name}")
        client.execute_sql(sqlglot.transpile(sql, read="duckdb", write=self.dialect)[0])


def _existing_tables(client: Any, schema: str) -> set[str]:
    rows = client.execute_sql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", schema
    )
    return {str(row[0]) for row in rows or []}


def _columns(client: Any, table: str) -> set[str]:
    rows = client.execute_sql(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s",
        SCHEMA,
        table,
    )
    return {str(row[0]) for row in rows or []}


def _changes(client: Any, table: str, existed: bool, columns: list[str]) -> TableChanges:
    """New, updated and newly deleted rows of `stripe.<table>__building` against the table
    as it is (all rows of a rebuild, or the objects recomputed)."""
    new_table, old_table = f"{SCHEMA}.{table}__building", f"{SCHEMA}.{table}"
    if not existed:
        new, deleted = client.execute_sql(
            f"SELECT COUNT(*), COUNT(CASE WHEN is_deleted THEN 1 END) FROM {new_table}"
        )[0]
        return TableChanges(table, 0, new, 0, deleted)
    # A column Stripe added since the last rebuild is not in the old table: compare the rest.
    before = _columns(client, table)
    compared = [c for c in columns if c not in BOOKKEEPING and c in before]
    differs = " OR ".join(f"n.{c} IS DISTINCT FROM o.{c}" for c in compared) or "FALSE"
    # A table built before accounts has no account_id: its rows were the key's own account's.
    same = " AND ".join(f"o.{c} = n.{c}" for c in KEY if c in before)
    new, updated, deleted = client.execute_sql(
        f"""
        SELECT
            COUNT(CASE WHEN o.id IS NULL THEN 1 END),
            COUNT(CASE WHEN o.id IS NOT NULL AND NOT (n.is_deleted AND NOT o.is_deleted)
                       AND ({differs}) THEN 1 END),
            COUNT(CASE WHEN n.is_deleted AND (o.id IS NULL OR NOT o.is_deleted) THEN 1 END)
        FROM {new_table} AS n
        LEFT JOIN {old_table} AS o ON {same}
        """
    )[0]
    return TableChanges(table, 0, new, updated, deleted)


def _totals(client: Any, change: TableChanges) -> TableChanges:
    """`change` with the table's rows, and those flagged deleted, as they are now."""
    rows, deleted_rows = client.execute_sql(
        f"SELECT COUNT(*), COUNT(CASE WHEN is_deleted THEN 1 END) FROM {SCHEMA}.{change.table}"
    )[0]
    return replace(change, rows=rows, deleted_rows=deleted_rows)
