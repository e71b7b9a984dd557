"""Raw observations written straight into `stripe_raw` through a real dlt pipeline, then the
SQL transforms, then the current-state rows: the ranking rules tested without the emulator."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import dlt

from stripe_promotions.observation import Deletion, Observation, Rank, tombstone
from stripe_promotions.rows import json_text, objects_table
from stripe_promotions.tables import (
    EVENTS_TABLE,
    LISTINGS_TABLE,
    RUNS_TABLE,
    TABLE_COLUMNS,
    routed,
    with_table,
)
from stripe_promotions_transforms.runner import run_transforms
from tests.support import as_json

# Raw table → object type, in the runner's build order (promotion_codes reads stripe.coupons).
OBJECT_TABLES: Final = {
    "coupons": "coupon",
    "products": "product",
    "promotion_codes": "promotion_code",
}
# A second of Stripe's clock well after every object's `created` in these tests.
T: Final = 1_700_000_000
CREATED: Final = T - 86_400  # when the objects of these tests were created, unless told
# The account observations belong to, unless told (Stripe Connect: another connected account).
ACCOUNT: Final = "acct_1Own"


@dataclass(frozen=True)
class Seen:
    """One observation of one object: how it was observed, and the object as it was seen."""

    observation: Observation
    obj: Mapping[str, Any]
    account: str = ACCOUNT


def observe(
    id: str,
    at: int,
    rank: Rank = Rank.READ,
    seq: int = 0,
    via: str = "list",
    *,
    deleted: Deletion | None = None,
    patched: Sequence[str] | None = None,
    key: str | None = None,
    account: str = ACCOUNT,
    **fields: Any,
) -> Seen:
    """An observation of `id` at Stripe's second `at` with the fields given (a complete one,
    unless `patched` names the only fields it carries). Its slot is its own unless `key`."""
    observation = Observation(
        observed_at=at,
        rank=rank,
        sequence=seq,
        via=via,
        key=key or f"{via}:{at}:{int(rank)}:{seq}",
        api_version="2024-06-20",
        patched_fields=None if patched is None else tuple(patched),
        deletion=deleted,
    )
    return Seen(observation, {"id": id, **fields}, account)


def event(id: str, at: int, seq: int, *, deleted: bool = False, **fields: Any) -> Seen:
    """An event of Stripe's second `at` (`seq` its place in Stripe's order), showing `fields`;
    `deleted` for a `*.deleted` event."""
    deletion = Deletion(at, "event") if deleted else None
    return observe(id, at, Rank.EVENT, seq, "event", deleted=deletion, **fields)


def gone(id: str, at: int, seq: int, via: str = "manual", reason: str | None = None) -> Seen:
    """A deletion carrying no fields (`tombstone`): a 404 (`not_found`), a batch `deleted`
    (`batch`) or a manual soft delete (`manual`), asserted at Stripe's second `at`."""
    return Seen(tombstone(at, seq, via, Deletion(at, via, reason)), {"id": id})


def listing(
    object_type: str,
    started_at: int,
    started_sequence: int,
    created_from: int = 0,
    listing_id: str | None = None,
    account: str = ACCOUNT,
) -> dict[str, Any]:
    """A `full_listings` marker: every `object_type` created at or after `created_from` was
    listed, starting at Stripe's second `started_at` and local sequence `started_sequence`."""
    return {
        "account_id": account,
        "listing_id": listing_id or f"{object_type}:{account}:{started_at}:{started_sequence}",
        "object_type": object_type,
        "started_at": started_at,
        "started_sequence": started_sequence,
        "completed_at": started_at + 1,
        "created_from": created_from,
        "objects": 0,
    }


def audit(
    seen: Seen, event_type: str, previous_attributes: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The `events` row of an event observation (`event`) of `event_type` (`coupon.updated`):
    Stripe's event id is the observation's slot, `previous_attributes` the values it replaced."""
    return {
        "account_id": seen.account,
        "id": seen.observation.key,
        "type": event_type,
        "object_type": event_type.rpartition(".")[0],
        "object_id": seen.obj["id"],
        "created": seen.observation.observed_at,
        "previous_attributes": json_text(previous_attributes),
        "_observed_via": seen.observation.via,
    }


def epoch(value: datetime | None) -> int | None:
    """A TIMESTAMPTZ column's value as Stripe's seconds (DuckDB and PostgreSQL alike)."""
    return None if value is None else int(value.timestamp())


@dataclass
class RawWarehouse:
    """A dlt pipeline into `stripe_raw` on one destination, and the current state it gives."""

    name: str
    pipeline: dlt.Pipeline

    def load(
        self,
        coupons: Sequence[Seen] = (),
        products: Sequence[Seen] = (),
        promotion_codes: Sequence[Seen] = (),
        full_listings: Sequence[Mapping[str, Any]] = (),
        sync_runs: Sequence[Mapping[str, Any]] = (),
        events: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """One `pipeline.run` writing these raw rows (every raw table exists after it);
        `events` are rows of the events audit table (`audit`)."""
        seen = {"coupons": coupons, "products": products, "promotion_codes": promotion_codes}
        others = {LISTINGS_TABLE: full_listings, RUNS_TABLE: sync_runs, EVENTS_TABLE: events}

        @dlt.resource(name="raw_rows")
        def raw_rows() -> Iterator[Any]:
            for table, object_type in OBJECT_TABLES.items():
                for account in dict.fromkeys([ACCOUNT, *(s.account for s in seen[table])]):
                    pages = [(s.observation, [s.obj]) for s in seen[table] if s.account == account]
                    yield routed(objects_table(object_type, pages), table, account)
            for table in TABLE_COLUMNS:
                rows = others.get(table, [])
                for account in dict.fromkeys(
                    [ACCOUNT, *(r.get("account_id", ACCOUNT) for r in rows)]
                ):
                    mine = [r for r in rows if r.get("account_id", ACCOUNT) == account]
                    yield with_table(table, mine, account)

        self.pipeline.run(raw_rows())

    def current(self, table: str) -> dict[str, dict[str, Any]]:
        """Run the transforms and read `stripe.<table>` by id (`id@account` for an account
        other than ACCOUNT)."""
        run_transforms(self.pipeline, OBJECT_TABLES)
        with (
            self.pipeline.sql_client() as client,
            client.execute_query(f"SELECT * FROM stripe.{table}") as cursor,
        ):
            names = [c[0] for c in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        for row in rows:
            if "metadata" in row:
                row["metadata"] = as_json(row["metadata"])
        return {
            row["id"] if row["account_id"] == ACCOUNT else f"{row['id']}@{row['account_id']}": row
            for row in rows
        }

    def history(self, table: str) -> dict[str, list[dict[str, Any]]]:
        """Run the transforms and read `stripe.<table>_history`: each object's rows in version
        order, by id as in `current`."""
        run_transforms(self.pipeline, OBJECT_TABLES)
        found: dict[str, list[dict[str, Any]]] = {}
        for row in self.rows(f"SELECT * FROM stripe.{table}_history ORDER BY version"):
            found.setdefault(self.name_of(row), []).append(row)
        return found

    def as_of(self, table: str, at: int, helper: bool = True) -> dict[str, dict[str, Any]]:
        """The rows of `stripe.<table>_history` holding at Stripe's second `at`, by id as in
        `current`: through the runner's helper `stripe.<table>_as_of`, or (`helper` false)
        the documented WHERE clause."""
        ts = datetime.fromtimestamp(at, UTC).isoformat()
        sql = (
            f"SELECT * FROM stripe.{table}_as_of(CAST('{ts}' AS TIMESTAMPTZ))"
            if helper
            else f"SELECT * FROM stripe.{table}_history WHERE valid_from <= CAST('{ts}' AS "
            f"TIMESTAMPTZ) AND (valid_to IS NULL OR valid_to > CAST('{ts}' AS TIMESTAMPTZ))"
        )
        return {self.name_of(row): row for row in self.rows(sql)}

    def rows(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a query as dicts, JSON columns parsed."""
        with (
            self.pipeline.sql_client() as client,
            client.execute_query(sql) as cursor,
        ):
            names = [c[0] for c in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        for row in rows:
            for column in ("metadata", "changed_fields"):
                if column in row:
                    row[column] = as_json(row[column])
        return rows

    @staticmethod
    def name_of(row: Mapping[str, Any]) -> str:
        """An object's name in these tests: its id, `id@account` for another account."""
        return row["id"] if row["account_id"] == ACCOUNT else f"{row['id']}@{row['account_id']}"
