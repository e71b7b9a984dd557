"""What Stripe's events (from /v1/events or a batch of saved webhooks) become: one observation
of the object per event (a deletion event says the object is gone), and an audit row."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from .observation import Deletion, Observation, Rank
from .rows import json_text, objects_table, patched_fields
from .settings import OBJECT_TYPES
from .tables import EVENTS_TABLE, plain_table


class EventBatch:
    """Events in Stripe's order, oldest first, each numbered by the sequence given with it."""

    def __init__(self, via: str) -> None:
        self.via = via
        self.audit: list[dict[str, Any]] = []
        self.snapshots: dict[str, list[tuple[Observation, list[Mapping[str, Any]]]]] = {}
        self.counts: dict[tuple[str, str], int] = {}
        self.touched: dict[str, set[str]] = {}  # object ids with events, by type
        self.deleted: dict[str, set[str]] = {}

    def add(self, event: Mapping[str, Any], sequence: int) -> None:
        """One event: an audit row and the object as the event shows it."""
        object_type, _, action = str(event["type"]).rpartition(".")
        obj = event["data"]["object"]
        object_id = str(obj["id"])
        created = int(event["created"])
        deletion = None
        if action == "deleted":
            self.deleted.setdefault(object_type, set()).add(object_id)
            deletion = Deletion(created, "event" if self.via == "event" else "batch")
        observation = Observation(
            observed_at=created,
            rank=Rank.EVENT,
            sequence=sequence,
            via=self.via,
            key=str(event["id"]),
            api_version=event.get("api_version"),
            # Events leave out the fields Stripe includes only on request (a coupon's
            # applies_to and currency_options): they carry the others, not those as null.
            patched_fields=patched_fields(object_type, obj),
            deletion=deletion,
        )
        request = event.get("request")
        request = request if isinstance(request, Mapping) else {}
        self.audit.append(
            {
                "id": event["id"],
                "type": event["type"],
                "object_type": object_type,
                "object_id": obj.get("id"),
                "created": event["created"],
                "api_version": event.get("api_version"),
                "livemode": event.get("livemode"),
                "request_id": request.get("id"),
                "idempotency_key": request.get("idempotency_key"),
                "previous_attributes": json_text(event["data"].get("previous_attributes")),
                "_observed_via": self.via,
            }
        )
        self.snapshots.setdefault(object_type, []).append((observation, [obj]))
        self.touched.setdefault(object_type, set()).add(object_id)
        self.counts[(object_type, action)] = self.counts.get((object_type, action), 0) + 1

    def changed_ids(self, object_type: str) -> list[str]:
        """Objects of a type that changed and were not deleted (in this batch of events)."""
        return sorted(self.touched.get(object_type, set()) - self.deleted.get(object_type, set()))

    def tables(self) -> list[tuple[str, pa.Table]]:
        """(raw table name, Arrow table) pairs to yield."""
        out: list[tuple[str, pa.Table]] = []
        if self.audit:
            out.append((EVENTS_TABLE, plain_table(EVENTS_TABLE, self.audit)))
        for object_type, chunks in self.snapshots.items():
            out.append((OBJECT_TYPES[object_type].table, objects_table(object_type, chunks)))
        return out
