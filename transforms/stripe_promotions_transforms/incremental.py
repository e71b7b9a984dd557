"""Which objects a run of the transforms recomputes, and which loads it has applied.

An object's rows in the current-state and history tables follow from its own raw
observations, its account's newest full listing of its type, Stripe's clock at the last sync
(for expiry) and, for a promotion code, its coupon's rows. A run recomputes exactly the
objects one of those moved for since the last run: the objects of the dlt loads it has not
applied yet, those a newer full listing may find absent, those whose deadline the clock passed,
and the codes of coupons whose validity changed. Recomputing an object from all of its
observations gives what a full rebuild gives, so recomputing one too many is only work.

`stripe._transformed_loads` remembers the loads applied, the clock they reached and a digest
of what the SQL is made from (the SQL files, the raw columns): a new digest, a missing table or
an applied load that vanished from the raw dataset (restored from a backup, emptied) means a
full rebuild, as does `transform --full`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlt.common.schema.typing import C_DLT_LOAD_ID

STATE_TABLE = "_transformed_loads"
# Bumped when what a run recomputes changes: the next run rebuilds everything once.
RECOMPUTE_RULES = 1
# dlt's completed loads; a load id is the load's start time as text.
LOADS_TABLE = "_dlt_loads"
LOAD_ID = C_DLT_LOAD_ID  # the load of a raw row (dlt's; the pipeline turns it on for Arrow)
LOAD_ID_FORMAT = re.compile(r"^[0-9.]+$")
# Columns whose time passing changes an object without any observation (see <table>.sql).
DEADLINES = {"coupons": "redeem_by", "promotion_codes": "expires_at"}
# A promotion code's rows derive from its coupon's `valid` (promotion_codes.sql and its
# history): the referencing table, its column, the referenced table.
REFERENCES = {"promotion_codes": ("coupon_id", "coupons")}


@dataclass(frozen=True)
class Plan:
    """What this run of the transforms does: rebuild everything, or apply `loads`."""

    full: bool
    why: str  # for a full rebuild: the reason, in a few words
    loads: tuple[str, ...]  # the completed loads not applied yet
    synced_before: int | None  # Stripe's clock the last run reached (its `synced_until`)
    synced_now: int | None


def inputs_digest(sql_dir: Path, raw: dict[str, dict[str, str]]) -> str:
    """What the SQL is made from: the SQL files, the raw tables' columns and the rules."""
    parts = {path.name: path.read_text() for path in sorted(sql_dir.glob("*.sql"))}
    text = json.dumps([RECOMPUTE_RULES, parts, raw], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def plan(client: Any, schema: str, dataset: str, digest: str, rebuild: str | None) -> Plan:
    """Read what the last run applied; `rebuild` names a reason to rebuild everything."""
    loads = client.execute_sql(
        f"SELECT load_id FROM {dataset}.{LOADS_TABLE} WHERE status = 0 ORDER BY load_id"
    )
    completed = [str(row[0]) for row in loads or []]
    synced_now = scalar(client, f"SELECT MAX(server_time) FROM {dataset}.sync_runs")
    if rebuild:
        return Plan(True, rebuild, tuple(completed), None, synced_now)
    state = f"{schema}.{STATE_TABLE}"
    applied = client.execute_sql(f"SELECT load_id, synced_until, digest FROM {state}")
    if not applied:
        return Plan(True, "first run", tuple(completed), None, synced_now)
    known = {str(row[0]) for row in applied}
    if known - set(completed):
        return Plan(True, "loads vanished", tuple(completed), None, synced_now)
    if any(row[2] != digest for row in applied):
        return Plan(True, "new SQL or columns", tuple(completed), None, synced_now)
    before = [int(row[1]) for row in applied if row[1] is not None]
    pending = tuple(load for load in completed if load not in known)
    return Plan(False, "", pending, max(before, default=None), synced_now)


def record(client: Any, schema: str, work: Plan, digest: str) -> None:
    """Remember the loads this run applied (all of them, after a full rebuild)."""
    state = f"{schema}.{STATE_TABLE}"
    client.execute_sql(
        f"CREATE TABLE IF NOT EXISTS {state} "
        "(load_id TEXT, synced_until BIGINT, digest TEXT, transformed_at TIMESTAMPTZ)"
    )
    if work.full:
        client.execute_sql(f"DELETE FROM {state}")
    synced = "NULL" if work.synced_now is None else str(int(work.synced_now))
    for start in range(0, len(work.loads), 500):
        values = ", ".join(
            f"('{load}', {synced}, '{digest}', CURRENT_TIMESTAMP)"
            for load in _checked(work.loads[start : start + 500])
        )
        client.execute_sql(f"INSERT INTO {state} VALUES {values}")


def changed_objects(
    table: str,
    object_type: str,
    schema: str,
    dataset: str,
    work: Plan,
    moved: str | None,
) -> str:
    """The SELECT of the objects of `table` to recompute (DuckDB's dialect); `moved` is the
    table of the referenced objects whose rows changed (promotion codes: their coupons)."""
    parts = []
    if work.loads:
        loads = ", ".join(f"'{load}'" for load in _checked(work.loads))
        parts += [
            # Observed by a load not applied yet.
            f"SELECT account_id, id FROM {dataset}.{table} WHERE {LOAD_ID} IN ({loads})",
            f"SELECT account_id, object_id AS id FROM {dataset}.events "
            f"WHERE {LOAD_ID} IN ({loads}) AND object_type = '{object_type}'",
            # Possibly absent from a newer full listing: last observed by its start.
            f"""SELECT s.account_id, s.id FROM {schema}.{table} AS s
            JOIN (
                SELECT account_id, MAX(started_at) AS started_at
                FROM {dataset}.full_listings
                WHERE {LOAD_ID} IN ({loads}) AND object_type = '{object_type}'
                GROUP BY account_id
            ) AS l ON l.account_id = s.account_id
            WHERE s.synced_at <= to_timestamp(l.started_at)""",
        ]
    deadline = DEADLINES.get(table)
    if deadline and work.synced_now is not None and work.synced_now != work.synced_before:
        # Its deadline passed between the two clocks (either way, should the clock go back).
        low, high = sorted((work.synced_before or 0, work.synced_now))
        parts.append(
            f"SELECT account_id, id FROM {schema}.{table} WHERE {deadline} "
            f"BETWEEN to_timestamp({low}) AND to_timestamp({high})"
        )
    if moved and table in REFERENCES:
        column = REFERENCES[table][0]
        parts.append(
            f"SELECT p.account_id, p.id FROM {schema}.{table} AS p "
            f"JOIN {schema}.{moved} AS m ON m.account_id = p.account_id AND m.id = p.{column}"
        )
    if not parts:
        return f"SELECT account_id, id FROM {schema}.{table} WHERE FALSE"
    union = "\nUNION ALL\n".join(parts)
    return f"SELECT DISTINCT account_id, id FROM (\n{union}\n) AS candidates"


def moved_references(schema: str, table: str, history: str | None) -> str:
    """The SELECT of the recomputed objects of `table` whose rows others derive from changed
    (DuckDB's dialect): a coupon's `valid` now, or when its `valid` changed in its history
    (what promotion_codes_history.sql reads of it: a rename changes none of a code's rows)."""
    key = "n.account_id = o.account_id AND n.id = o.id"
    parts = [
        f"""SELECT n.account_id, n.id FROM {schema}.{table}__building AS n
        LEFT JOIN {schema}.{table} AS o ON {key}
        WHERE o.id IS NULL OR n.valid IS DISTINCT FROM o.valid"""
    ]
    if history:
        new = _validity(f"SELECT * FROM {schema}.{history}__building")
        old = _validity(
            f"""SELECT o.* FROM {schema}.{history} AS o
            JOIN {schema}.{table}__changed AS n ON {key}"""
        )
        parts += [
            f"SELECT account_id, id FROM ({new} EXCEPT {old}) AS added",
            f"SELECT account_id, id FROM ({old} EXCEPT {new}) AS removed",
        ]
    union = "\nUNION ALL\n".join(parts)
    return f"SELECT DISTINCT account_id, id FROM (\n{union}\n) AS moved"


def _validity(rows: str) -> str:
    """Where `valid` changed in these history rows: the first lasting row (from no time: it
    stands for the time before), then every lasting row whose `valid` differs from the one
    before, with its `changed_after`."""
    return f"""SELECT account_id, id, CASE WHEN number > 1 THEN valid_from END AS valid_from,
            valid, changed_after
        FROM (
            SELECT
                account_id, id, valid_from, valid, changed_after,
                ROW_NUMBER() OVER w AS number,
                valid IS DISTINCT FROM LAG(valid) OVER w AS differs
            FROM ({rows}) AS history
            WHERE valid_to IS NULL OR valid_to > valid_from
            WINDOW w AS (PARTITION BY account_id, id ORDER BY valid_from)
        ) AS lasting
        WHERE number = 1 OR differs"""


def _checked(loads: tuple[str, ...]) -> tuple[str, ...]:
    """dlt's load ids are digits and a dot: anything else is not quoted into SQL."""
    for load in loads:
        if not LOAD_ID_FORMAT.match(load):
            raise ValueError(f"Unexpected dlt load id {load!r}")
    return loads


def scalar(client: Any, sql: str) -> int | None:
    """The one value a query returns (None for NULL)."""
    rows = client.execute_sql(sql)
    value = rows[0][0] if rows else None
    return None if value is None else int(value)
