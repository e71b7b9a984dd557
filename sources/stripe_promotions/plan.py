"""What a run is asked to do (`SyncRequest`) and what it will do (`Plan`, made once from Stripe's
clock and the events cursor, by whichever resource asks first)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from .client import Page, StripeApi
from .errors import StripeSourceError
from .listing import Lister, Window
from .settings import (
    EVENT_RETENTION_SECONDS,
    EVENTS_PATH,
    MAX_EVENT_TYPES,
    OBJECT_TYPES,
    RETENTION_MARGIN_SECONDS,
    ObjectType,
)
from .stats import RunStats

Mode = Literal["incremental", "sync_all", "sync_by_ids", "sync_batch", "soft_delete"]


@dataclass(frozen=True)
class SyncRequest:
    """What a run does: the incremental load (default) or one of the four verbs."""

    mode: Mode = "incremental"
    # () for the incremental load and sync all: the configured `object_types` (default all)
    object_types: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    items: tuple[Mapping[str, Any], ...] = ()
    reason: str | None = None
    # soft delete: also ids the destination has never seen (a typo is refused otherwise)
    force: bool = False
    # sync by ids: ids the destination has never seen; Stripe's 404 for one records nothing
    unseen_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [t for t in self.object_types if t not in OBJECT_TYPES]
        if unknown:
            raise StripeSourceError(
                f"Unknown object type {unknown[0]!r}: use one of {', '.join(OBJECT_TYPES)}."
            )
        if (
            self.mode in ("sync_by_ids", "sync_batch", "soft_delete")
            and len(self.object_types) != 1
        ):
            raise StripeSourceError(
                f"A {self.mode} run is for one object type, not {self.object_types}."
            )


@dataclass(frozen=True)
class Plan:
    """Decided once per run from Stripe's clock and the events cursor."""

    now: int  # Stripe's clock at the start of the run
    events_from: int | None  # re-read events created at or after this (None: first run)
    full_listing_types: tuple[str, ...]  # types to list in full (sync all; events past retention)
    first_events: tuple[Page, Window | None] | None = None  # the request that read the clock
    mode: str = "incremental"  # the run's mode, as asked


class Planner:
    """Makes one account's plan on first use: one cheap events request gives Stripe's clock."""

    def __init__(
        self,
        api: StripeApi,
        request: SyncRequest,
        lag: int,
        types: Sequence[ObjectType],
        stats: RunStats,
        account_id: str,
    ) -> None:
        self.api, self.request, self.lag, self.stats = api, request, lag, stats
        self.account_id = account_id
        self.lister = Lister(api)
        self.event_filters = event_filters(types)
        self._plan: Plan | None = None
        self._failed: StripeSourceError | None = None
        self._lock = threading.Lock()

    def plan(self, events_state: Mapping[str, Any]) -> Plan:
        """The run's plan; every resource gets the same one."""
        with self._lock:
            if self._failed is not None:
                raise self._failed  # every resource asks: one failure is reported, not retried
            if self._plan is None:
                try:
                    self._plan = self._make(events_state)
                except StripeSourceError as error:
                    self._failed = error
                    raise
            return self._plan

    def _make(self, events_state: Mapping[str, Any]) -> Plan:
        api = self.api
        cursor = events_state.get("cursor")
        if cursor is not None and self.request.mode == "incremental":
            # The first events page doubles as the clock reading: a quiet run costs 4 requests.
            events_from = max(0, int(cursor) - self.lag)
            first = self.lister.first_page(
                EVENTS_PATH, low=events_from, params=self.event_filters[0]
            )
            now = first[0].server_time
        else:
            found = api.get(EVENTS_PATH, {"limit": 1}, what="events")
            now, first = (found[1] if found else int(time.time())), None
        if self.request.mode == "sync_all":
            return Plan(now, None, self.request.object_types, mode="sync_all")
        if cursor is None:
            return Plan(now, None, ())
        horizon = now - (EVENT_RETENTION_SECONDS - RETENTION_MARGIN_SECONDS)
        if cursor < horizon:
            days = (now - cursor) / 86400
            types = ", ".join(OBJECT_TYPES[t].table for t in self.request.object_types)
            self.stats.note(
                f"The events cursor of {self.account_id} is {days:.0f} days old and Stripe "
                "keeps events for 30 days: "
                f"listing all {types} instead, so changes and deletions in the gap are caught."
            )
            return Plan(now, None, self.request.object_types)
        return Plan(now, events_from, (), first)


def event_filters(types: Sequence[ObjectType]) -> list[dict[str, list[str]]]:
    """The `types[]` filters that read every event of these object types, each within
    Stripe's limit of names per request; one type's events are never split between two, so
    the events of one object keep their order within one listing."""
    filters: list[dict[str, list[str]]] = []
    names: list[str] = []
    for object_type in types:
        if names and len(names) + len(object_type.event_types) > MAX_EVENT_TYPES:
            filters.append({"types": names})
            names = []
        names = [*names, *object_type.event_types]
    return [*filters, {"types": names}]


def parse_start_date(value: str | int | date | None) -> int:
    """`start_date` as unix seconds: YYYY-MM-DD, an ISO timestamp or unix seconds; 0 if unset."""
    if value is None or value == "":
        return 0
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(moment.timestamp())
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp())
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        return int(value)
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise StripeSourceError(
            f"start_date {value!r} is not a date: use YYYY-MM-DD, an ISO 8601 timestamp "
            "or unix seconds."
        ) from None
    return parse_start_date(parsed)
