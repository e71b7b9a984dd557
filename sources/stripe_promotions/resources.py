"""The dlt source `stripe`: coupons, products and promotion codes, their changes and deletions.

Resources, top to bottom: new objects by `created` (one per type), a full listing when a run
must see everything (sync all, or events past Stripe's 30-day retention), the events that
carry updates and deletions, and the four verbs' resources (by ids, batch, soft delete).
Every row says when and how it was observed; the SQL transforms turn that into current state.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from itertools import chain
from typing import Any

import dlt
import pyarrow as pa
from dlt.extract.resource import DltResource

from .accounts import AccountRun, Accounts, parse_accounts
from .batch import validate_batch
from .client import Page, StripeApi
from .errors import StripeSourceError
from .events import EventBatch
from .interleave import interleaved
from .observation import (
    Deletion,
    Observation,
    Rank,
    event_sequences,
    read,
    sequence_now,
    tombstone,
)
from .plan import Plan, SyncRequest, parse_start_date
from .rate_limit import RateBudget
from .rows import objects_table, patched_fields
from .settings import (
    API_VERSION,
    DEFAULT_API_BASE,
    EVENT_LAG_SECONDS,
    EVENTS_PATH,
    MAX_ATTEMPTS,
    OBJECT_TYPES,
    OPERATION_RATE_LIMIT,
    PAGE_SIZE,
    ROWS_PER_TABLE,
    ObjectType,
)
from .stats import RunStats
from .tables import (
    LISTINGS_TABLE,
    RAW_SHAPE,
    RUNS_TABLE,
    TABLE_COLUMNS,
    routed,
    with_table,
)


@dlt.source(name="stripe", section="stripe", max_table_nesting=0)
def stripe_source(
    api_key: str | None = dlt.secrets.value,
    api_base: str = DEFAULT_API_BASE,
    api_version: str = API_VERSION,
    start_date: str | None = None,
    page_size: int = PAGE_SIZE,
    max_requests_per_second: float | None = None,
    max_requests_per_second_per_operation: float = OPERATION_RATE_LIMIT,
    object_types: list[str] | None = None,
    event_lag_seconds: int = EVENT_LAG_SECONDS,
    max_attempts: int = MAX_ATTEMPTS,
    accounts: Any = None,  # None, "all", a list, or ids in a string (accounts.parse_accounts)
    connect_rate_budget: str = "platform",
    request: SyncRequest | None = None,
    stats: RunStats | None = None,
    check_now: bool = False,
) -> list[DltResource]:
    """Stripe coupons, products and promotion codes; `request` picks the mode (incremental).

    The key comes from dlt's config (`[sources.stripe] api_key`, `SOURCES__STRIPE__API_KEY`)
    or `STRIPE_API_KEY`. `accounts`: absent, the key's own account; a list of connected
    `acct_...` ids; or "all" (accounts.py). `check_now` checks the key and base URL when the
    source is built (the runner does; an orchestrator building definitions does not).
    """
    request = request or SyncRequest()
    if not request.object_types:  # the configured types (`sources.stripe.object_types`)
        request = replace(request, object_types=tuple(object_types or OBJECT_TYPES))
    stats = stats or RunStats()

    def client(account: str | None, budget: RateBudget | None) -> StripeApi:
        return StripeApi(
            api_key or os.environ.get("STRIPE_API_KEY", ""),
            api_base,
            api_version=api_version,
            max_requests_per_second=max_requests_per_second,
            max_requests_per_second_per_operation=max_requests_per_second_per_operation,
            max_attempts=max_attempts,
            page_size=page_size,
            account=account,
            budget=budget,
        )

    start = parse_start_date(start_date)
    types = [OBJECT_TYPES[name] for name in request.object_types]
    selection = parse_accounts(accounts)
    platform = Accounts(
        client, selection, connect_rate_budget, request, event_lag_seconds, types, stats
    )
    if check_now and request.mode in ("incremental", "sync_all", "sync_by_ids"):
        platform.own_client()  # a missing or malformed key or base URL is reported first
    if request.mode == "incremental":
        resources = [
            *(new_objects(platform, t, start, stats) for t in types),
            full_listing(platform, types, start, stats),
            events(platform, event_lag_seconds, stats),
        ]
    elif request.mode == "sync_all":
        resources = [full_listing(platform, types, start, stats)]
    elif request.mode == "sync_by_ids":
        resources = [by_ids(platform, types[0], request.ids, request.unseen_ids, stats)]
    elif request.mode == "sync_batch":
        resources = [batch(platform, types[0], request.items, stats)]
    else:
        resources = [soft_delete(platform, types[0], request.ids, request.reason, stats)]
    return [*resources, raw_tables()]


# -- the raw tables exist from the first run on, so the transforms can always read them -----------
def raw_tables() -> DltResource:
    """Empty tables, once per RAW_SHAPE: every table and column the SQL reads exists, even
    one nothing was written to yet (and a raw dataset of an earlier shape gains them)."""

    @dlt.resource(name="raw_tables")
    def create() -> Iterator[Any]:
        state = dlt.current.resource_state()
        if state.get("shape") == RAW_SHAPE:
            return
        for object_type in OBJECT_TYPES.values():
            yield routed(objects_table(object_type.name, []), object_type.table, None)
        for table_name in TABLE_COLUMNS:
            yield with_table(table_name, [], None)
        state["shape"] = RAW_SHAPE

    return create


# -- new objects: incremental on `created`, per account ---------------------------------------
def new_objects(
    platform: Accounts, object_type: ObjectType, start: int, stats: RunStats
) -> DltResource:
    """Objects created since each account's last run: `created[gte]` its cursor, the ids
    already loaded from the cursor's second dropped."""

    @dlt.resource(name=object_type.table, parallelized=True)
    def listing() -> Iterator[Any]:
        state = dlt.current.source_state()
        yield from platform.each(state, lambda run: created_since(run, object_type, start, stats))

    return listing


def created_since(
    run: AccountRun, object_type: ObjectType, start: int, stats: RunStats
) -> Iterator[Any]:
    """One account's objects created since its cursor; the cursor moves once all are read."""
    plan_run(run)  # Stripe's clock is read before any listing starts
    cursor = run.created_cursor(object_type.name)
    low = max(start, int(cursor.get("cursor", start)))
    loaded = frozenset(cursor.get("boundary", ())) if cursor.get("cursor") == low else frozenset()
    newest = Newest(low, loaded)
    pages = run.lister.list_pages(object_type.path, low=low, params=list_params(object_type))
    found = (newest.seen(page) for page in pages)
    for table in observed_tables(object_type, found, "list", run.api.api_version, stats):
        yield routed(table, object_type.table, run.account_id)
    run.advance_created(object_type.name, newest.created, newest.ids)


class Newest:
    """A listing from the cursor's second `low`: drops the ids loaded from that second
    before, and notes the newest `created` seen and the ids created in that second."""

    def __init__(self, low: int, loaded: frozenset[str]) -> None:
        self.low, self.loaded = low, loaded
        self.created, self.ids = low, set(loaded)

    def seen(self, page: Page) -> Page:
        """The page without the objects loaded before; the newest second noted."""
        objects = page.objects
        if self.loaded and objects and int(objects[-1]["created"]) == self.low:
            objects = [
                o for o in objects if int(o["created"]) != self.low or o["id"] not in self.loaded
            ]
        for obj in objects:  # newest first: only the leading objects can be the newest
            created = int(obj["created"])
            if created < self.created:
                break
            if created > self.created:
                self.created, self.ids = created, set()
            self.ids.add(str(obj["id"]))
        return page if objects is page.objects else replace(page, objects=objects)


# -- full listing: sync all, or events past retention ---------------------------------------------
def full_listing(
    platform: Accounts, types: Sequence[ObjectType], start: int, stats: RunStats
) -> DltResource:
    """Every object of the planned types, then a marker: objects not listed were deleted."""

    @dlt.resource(name="full_listing", parallelized=True)
    def listing() -> Iterator[Any]:
        state = dlt.current.source_state()
        yield from platform.each(state, lambda run: listed_account(run, types, start, stats))

    return listing


def listed_account(
    run: AccountRun, types: Sequence[ObjectType], start: int, stats: RunStats
) -> Iterator[Any]:
    """One account's full listings (those its plan asks for), then its run marker."""
    plan = plan_run(run)
    state = run.events_state
    if state.get("cursor") is None:
        # A first run that lists everything (sync all): changes from its start on come
        # through events, so the next incremental run reads them instead of missing them.
        state["cursor"], state["seen"] = plan.now, []
    relisted = [t for t in types if t.name in plan.full_listing_types]
    yield from interleaved(listed_in_full(run, t, start, plan, stats) for t in relisted)
    yield run_marker("full_listing", run, plan, stats)


def listed_in_full(
    run: AccountRun, object_type: ObjectType, start: int, plan: Plan, stats: RunStats
) -> Iterator[Any]:
    """Every object of one type, then the marker saying the listing is complete."""
    api = run.api
    started, started_sequence = api.server_time or plan.now, sequence_now()
    listed = 0
    pages = run.lister.list_pages(object_type.path, low=start, params=list_params(object_type))
    for table in observed_tables(object_type, pages, "full_listing", api.api_version, stats):
        listed += table.num_rows
        yield routed(table, object_type.table, run.account_id)
    marker = {
        "listing_id": uuid.uuid4().hex,
        "object_type": object_type.name,
        "started_at": started,
        "started_sequence": started_sequence,
        "completed_at": api.server_time,
        "created_from": start,
        "objects": listed,
    }
    yield with_table(LISTINGS_TABLE, [marker], run.account_id)


# -- events: updates and deletions ----------------------------------------------------------------
def events(platform: Accounts, lag: int, stats: RunStats) -> DltResource:
    """Each account's events since its cursor (re-reading `lag` seconds behind it), each
    applied once."""

    @dlt.resource(name="events", parallelized=True)
    def changes() -> Iterator[Any]:
        state = dlt.current.source_state()
        yield from platform.each(state, lambda run: account_changes(run, lag, stats))

    return changes


def account_changes(run: AccountRun, lag: int, stats: RunStats) -> Iterator[Any]:
    """One account's events since its cursor, then the re-reads they call for."""
    state = run.events_state
    plan = plan_run(run)
    if plan.events_from is None:
        # First run or past retention: the listings cover everything until now.
        state["cursor"], state["seen"] = plan.now, []
        yield run_marker("events", run, plan, stats)
        return
    seen = set(state.get("seen", []))
    cursor = int(state["cursor"])
    newest = cursor
    recent: list[tuple[int, str]] = []
    unseen: list[Mapping[str, Any]] = []
    # Numbered from before reading: anything observed after the events ranks above them.
    numbers = event_sequences()
    filters = run.planner.event_filters
    pages = chain(
        run.lister.list_pages(
            EVENTS_PATH, params=filters[0], parallel=False, first=plan.first_events
        ),
        *(
            run.lister.list_pages(EVENTS_PATH, low=plan.events_from, params=more, parallel=False)
            for more in filters[1:]
        ),
    )
    for page in pages:
        for event in page.objects:
            recent.append((int(event["created"]), str(event["id"])))
            if event["id"] not in seen:
                unseen.append(event)
                newest = max(newest, int(event["created"]))
    # Stripe lists newest first: numbered oldest first, a later event ranks higher. (One
    # type's events come from one filter, so one object's events are in one list.)
    changes = EventBatch("event")
    for event in reversed(unseen):
        changes.add(event, next(numbers))
    stats.changes.update(changes.counts)
    for table_name, table in changes.tables():
        stats.rows[f"{table_name}/event"] += table.num_rows
        yield routed(table, table_name, run.account_id)
    # Events omit fields Stripe includes only on request (a coupon's applies_to and
    # currency_options): read the changed objects again with them. Read after the events,
    # they rank with them (Rank.EVENT), above them by sequence.
    for object_type in OBJECT_TYPES.values():
        changed = changes.changed_ids(object_type.name)
        if object_type.expand and changed:
            yield from retrieved(run, object_type, changed, stats, Rank.EVENT)
    new_cursor = max(newest, plan.now - lag)
    state["cursor"] = new_cursor
    state["seen"] = sorted(i for created, i in recent if created >= new_cursor - lag)
    yield run_marker("events", run, plan, stats)


# -- the verbs: by ids, a batch, soft delete ------------------------------------------------------
def by_ids(
    platform: Accounts,
    object_type: ObjectType,
    ids: Sequence[str],
    unseen: Sequence[str],
    stats: RunStats,
) -> DltResource:
    """Retrieve each id; one Stripe answers 404 for becomes a deletion tombstone, unless it
    is `unseen` (never observed: a typo is not a deletion, so nothing is recorded)."""

    @dlt.resource(name=f"{object_type.table}_by_id")
    def retrieve() -> Iterator[Any]:
        run = platform.single(dlt.current.source_state())
        wanted = list(dict.fromkeys(ids))
        yield from retrieved(run, object_type, wanted, stats, unseen=frozenset(unseen))

    return retrieve


def retrieved(
    run: AccountRun,
    object_type: ObjectType,
    ids: Sequence[str],
    stats: RunStats,
    rank: Rank = Rank.READ,
    unseen: frozenset[str] = frozenset(),
) -> Iterator[Any]:
    """Objects read by id (in parallel): their rows, and tombstones for ids Stripe lacks
    (but none for an `unseen` one: an id nobody ever observed was never there to delete).

    `rank`: Rank.EVENT for re-reads after a run's events (they saw those changes).
    """
    api = run.api
    with ThreadPoolExecutor(max_workers=api.max_workers) as pool:
        pages = list(pool.map(lambda i: api.retrieve(object_type.path, i, object_type.expand), ids))
    found = [(p.objects[0], p) for p in pages if p.objects]
    if found:
        version = api.api_version
        chunks = [
            (read(p.server_time, p.received_ns, "retrieve", version, rank), [obj])
            for obj, p in found
        ]
        stats.rows[f"{object_type.table}/retrieve"] += len(chunks)
        yield routed(objects_table(object_type.name, chunks), object_type.table, run.account_id)
    missing = [(i, p) for i, p in zip(ids, pages, strict=True) if not p.objects]
    unknown = [i for i, _ in missing if i in unseen]
    if unknown:
        stats.note(
            f"Stripe does not know {object_type.name} {', '.join(map(repr, unknown))} and the "
            "pipeline never saw it: nothing recorded."
        )
        missing = [(i, p) for i, p in missing if i not in unseen]
    if missing:
        stones = [
            (
                tombstone(
                    page.server_time,
                    page.received_ns,
                    "not_found",
                    Deletion(
                        page.server_time, "not_found", "Stripe answered 404 (resource_missing)"
                    ),
                ),
                [{"id": object_id}],
            )
            for object_id, page in missing
        ]
        stats.changes[(object_type.name, "not_found")] += len(stones)
        yield routed(objects_table(object_type.name, stones), object_type.table, run.account_id)


def batch(
    platform: Accounts,
    object_type: ObjectType,
    items: Sequence[Mapping[str, Any]],
    stats: RunStats,
) -> DltResource:
    """Objects or saved webhook events, checked first, then loaded whole or not at all.

    An object lacking some of its type's fields is a patch: its fields replace the stored
    ones, the others keep their last observed values.
    """

    @dlt.resource(name=f"{object_type.table}_batch")
    def load() -> Iterator[Any]:
        checked = validate_batch(object_type.name, items)
        state = dlt.current.source_state()
        account = platform.verb_account(state)
        elsewhere = [
            f"item {n} ({item.get('id')}, account {item['account']})"
            for n, item in enumerate(checked, 1)
            if item.get("object") == "event" and item.get("account") not in (None, account)
        ]
        if elsewhere:  # a connected account's saved webhook carries its `account`
            raise StripeSourceError(
                f"The batch holds events of another account than {account}: "
                f"{', '.join(elsewhere[:5])}. Nothing was loaded: pass that account "
                "(account='acct_...', --account acct_...)."
            )
        now = estimated_stripe_time(state)
        changes = EventBatch("batch")
        chunks: list[tuple[Observation, list[Mapping[str, Any]]]] = []
        # Saved webhooks run oldest first: a later item is a newer event.
        numbers = event_sequences()
        for item in checked:
            if item.get("object") == "event":
                changes.add(item, next(numbers))
            elif item.get("deleted") is True:
                seen = tombstone(now, sequence_now(), "batch", Deletion(now, "batch"))
                chunks.append((seen, [{"id": item["id"]}]))
            else:
                # A bare object counts as observed now; a product carries its own `updated`.
                # A patch gets a slot of its own: in a shared one, a later patch would erase
                # the fields of an earlier one.
                observed, sequence = int(item.get("updated") or now), sequence_now()
                patched = patched_fields(object_type.name, item)
                key = f"batch:{observed}" if patched is None else f"batch:{observed}:{sequence}"
                seen = Observation(
                    observed, Rank.READ, sequence, "batch", key, patched_fields=patched
                )
                chunks.append((seen, [item]))
        if chunks:
            yield routed(objects_table(object_type.name, chunks), object_type.table, account)
        for table_name, table in changes.tables():
            yield routed(table, table_name, account)
        stats.rows[f"{object_type.table}/batch"] += len(checked)
        stats.changes.update(changes.counts)

    return load


def soft_delete(
    platform: Accounts,
    object_type: ObjectType,
    ids: Sequence[str],
    reason: str | None,
    stats: RunStats,
) -> DltResource:
    """Mark ids deleted by hand, without touching Stripe; a later observation clears it."""

    @dlt.resource(name=f"{object_type.table}_soft_delete")
    def mark() -> Iterator[Any]:
        state = dlt.current.source_state()
        account = platform.verb_account(state)
        now = estimated_stripe_time(state)
        stones = [
            (
                tombstone(
                    now, sequence_now(), "manual", Deletion(now, "manual", reason or "soft delete")
                ),
                [{"id": object_id}],
            )
            for object_id in dict.fromkeys(ids)
        ]
        stats.changes[(object_type.name, "soft_deleted")] += len(stones)
        yield routed(objects_table(object_type.name, stones), object_type.table, account)

    return mark


# -- helpers --------------------------------------------------------------------------------------
def plan_run(run: AccountRun) -> Plan:
    """The account's plan (made by whichever resource asks first); notes Stripe's clock
    offset for the runs that do not ask Stripe (a batch, a soft delete)."""
    plan = run.plan()
    run.root["clock_offset"] = plan.now - int(time.time())
    return plan


def estimated_stripe_time(state: Mapping[str, Any]) -> int:
    """Stripe's clock without asking it: local time plus the offset the last run measured."""
    return int(time.time()) + int(state.get("clock_offset", 0))


def list_params(object_type: ObjectType) -> dict[str, Any]:
    """List parameters: the expansions the canonical row needs."""
    return {"expand": [f"data.{e}" for e in object_type.expand]} if object_type.expand else {}


def observed_tables(
    object_type: ObjectType, pages: Iterable[Page], via: str, version: str, stats: RunStats
) -> Iterator[pa.Table]:
    """Pages as Arrow tables of about ROWS_PER_TABLE rows, each row with its observation.

    Each page becomes a table as it arrives (its dicts are then freed while still in the CPU's
    cache); the pages' tables are joined into one contiguous table, since dlt's incremental
    filters a table of 50 chunks ten times slower than a contiguous one.
    """
    tables: list[pa.Table] = []
    rows = 0
    counter = f"{object_type.table}/{via}"
    for page in pages:
        if not page.objects:
            continue
        observation = read(page.server_time, page.received_ns, via, version)
        tables.append(objects_table(object_type.name, [(observation, page.objects)]))
        rows += len(page.objects)
        stats.rows[counter] += len(page.objects)
        if rows >= ROWS_PER_TABLE:
            yield joined(tables)
            tables, rows = [], 0
    if tables:
        yield joined(tables)


def joined(tables: list[pa.Table]) -> pa.Table:
    """Tables of pages as one contiguous table; a column some pages lack is null there."""
    return pa.concat_tables(tables, promote_options="default").combine_chunks()


def run_marker(resource: str, run: AccountRun, plan: Plan, stats: RunStats) -> Any:
    """One row per resource, account and run: Stripe's clock at its end, for "as of" in the
    transforms."""
    row = {
        "run_id": stats.run_id,
        "resource": resource,
        "mode": plan.mode,
        "server_time": run.api.server_time or plan.now,
        "requests": run.api.requests_made,
        "rows": sum(stats.rows.values()),
        "note": " ".join(stats.notes) or None,
    }
    return with_table(RUNS_TABLE, [row], run.account_id)
