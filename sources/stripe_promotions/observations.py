"""Rows for the raw tables besides objects: events, tombstones, listing markers, run markers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import pyarrow as pa

from .rows import (
    ARROW_TYPES,
    BIGINT,
    BOOL,
    JSON,
    OBSERVATION_COLUMNS,
    TEXT,
    Observation,
    column_hints,
    json_text,
    objects_table,
)
from .settings import OBJECT_TYPES

EVENT_COLUMNS: Final = {
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
DELETION_COLUMNS: Final = {
    "object_type": TEXT,
    "object_id": TEXT,
    "deleted_at": BIGINT,  # when Stripe deleted it, or when we learnt it was gone
    "source": TEXT,  # event | not_found | manual | batch
    "reason": TEXT,
    **OBSERVATION_COLUMNS,
}
LISTING_COLUMNS: Final = {
    "listing_id": TEXT,
    "object_type": TEXT,
    "started_at": BIGINT,  # Stripe's clock before the first page: older observations are gone
    "started_order": BIGINT,  # local ms at the start, for observations in the same second
    "completed_at": BIGINT,
    "created_from": BIGINT,  # only objects created at or after this were listed
    "objects": BIGINT,
}
RUN_COLUMNS: Final = {
    "run_id": TEXT,
    "resource": TEXT,
    "mode": TEXT,
    "server_time": BIGINT,  # Stripe's clock at the end: "as of" for expiry in the transforms
    "requests": BIGINT,
    "rows": BIGINT,
    "note": TEXT,
}

TABLE_COLUMNS: Final = {
    "events": EVENT_COLUMNS,
    "deletions": DELETION_COLUMNS,
    "full_listings": LISTING_COLUMNS,
    "sync_runs": RUN_COLUMNS,
}
PRIMARY_KEYS: Final = {
    "events": ("id",),
    "deletions": ("object_type", "object_id", "_observation_key"),
    "full_listings": ("listing_id",),
    "sync_runs": ("run_id", "resource"),
}


def table_hints(table: str) -> dict[str, Any]:
    """dlt hints for one of these tables: merge on its key, declared columns."""
    return {
        "table_name": table,
        "write_disposition": "merge",
        "primary_key": list(PRIMARY_KEYS[table]),
        "columns": column_hints(TABLE_COLUMNS[table]),
    }


def plain_table(table: str, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows of one of these tables as Arrow, with the declared types."""
    columns = TABLE_COLUMNS[table]
    return pa.table(
        {
            name: pa.array([row.get(name) for row in rows], ARROW_TYPES[kind])
            for name, kind in columns.items()
        }
    )


def tombstone(
    object_type: str,
    object_id: str,
    *,
    deleted_at: int,
    source: str,
    observation: Observation,
    reason: str | None = None,
) -> dict[str, Any]:
    """A deletion tombstone row."""
    return {
        "object_type": object_type,
        "object_id": object_id,
        "deleted_at": deleted_at,
        "source": source,
        "reason": reason,
        "_observed_at": observation.observed_at,
        "_observed_order": observation.order,
        "_observed_via": observation.via,
        "_observation_key": observation.key,
        "_api_version": observation.api_version,
    }


class EventBatch:
    """What a run of events (from the API or a batch of webhooks) turns into."""

    def __init__(self, via: str) -> None:
        self.via = via
        self.audit: list[dict[str, Any]] = []
        self.snapshots: dict[str, list[tuple[Observation, list[Mapping[str, Any]]]]] = {}
        self.tombstones: list[dict[str, Any]] = []
        self.counts: dict[tuple[str, str], int] = {}
        self.touched: dict[str, set[str]] = {}  # object ids with events, by type
        self.deleted: dict[str, set[str]] = {}

    def add(self, event: Mapping[str, Any], order: int) -> None:
        """One event: an audit row, the object's snapshot, a tombstone if it was a deletion."""
        object_type, _, action = str(event["type"]).rpartition(".")
        obj = event["data"]["object"]
        observation = Observation(
            observed_at=int(event["created"]),
            via=self.via,
            key=str(event["id"]),
            order=order,
            api_version=event.get("api_version"),
        )
        request = event.get("request") or {}
        self.audit.append(
            {
                "id": event["id"],
                "type": event["type"],
                "object_type": object_type,
                "object_id": obj.get("id"),
                "created": event["created"],
                "api_version": event.get("api_version"),
                "livemode": event.get("livemode"),
                "request_id": request.get("id") if isinstance(request, Mapping) else None,
                "idempotency_key": request.get("idempotency_key")
                if isinstance(request, Mapping)
                else None,
                "previous_attributes": json_text(event["data"].get("previous_attributes")),
                "_observed_via": self.via,
            }
        )
        self.snapshots.setdefault(object_type, []).append((observation, [obj]))
        self.touched.setdefault(object_type, set()).add(str(obj["id"]))
        if action == "deleted":
            self.deleted.setdefault(object_type, set()).add(str(obj["id"]))
            self.tombstones.append(
                tombstone(
                    object_type,
                    str(obj["id"]),
                    deleted_at=int(event["created"]),
                    source="event" if self.via == "event" else "batch",
                    observation=observation,
                )
            )
        self.counts[(object_type, action)] = self.counts.get((object_type, action), 0) + 1

    def changed_ids(self, object_type: str) -> list[str]:
        """Objects of a type that changed and were not deleted (in this batch of events)."""
        return sorted(self.touched.get(object_type, set()) - self.deleted.get(object_type, set()))

    def tables(self) -> list[tuple[str, pa.Table]]:
        """(table name, Arrow table) pairs to yield."""
        out: list[tuple[str, pa.Table]] = []
        if self.audit:
            out.append(("events", plain_table("events", self.audit)))
        for object_type, chunks in self.snapshots.items():
            out.append((OBJECT_TYPES[object_type].table, objects_table(object_type, chunks)))
        if self.tombstones:
            out.append(("deletions", plain_table("deletions", self.tombstones)))
        return out
