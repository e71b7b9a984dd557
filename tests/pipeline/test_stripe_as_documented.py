"""The connector against an emulator as strict as Stripe's documentation: exact event names in
`types[]`, and both rate limits (the account's and each operation's) enforced."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
import stripe

from stripe_emulator.server import EmulatorServer
from stripe_promotions import SyncRequest
from stripe_promotions.client import StripeApi
from stripe_promotions.plan import event_filters
from stripe_promotions.settings import MAX_EVENT_TYPES, OBJECT_TYPES, ObjectType
from tests.support import TEST_KEY, Warehouse

LIVE_KEY = "sk_live_emulatorKey0123456789"


def test_events_are_asked_for_by_their_exact_names() -> None:
    (only,) = event_filters(list(OBJECT_TYPES.values()))
    assert only["types"] == [
        "coupon.created",
        "coupon.updated",
        "coupon.deleted",
        "product.created",
        "product.updated",
        "product.deleted",
        "promotion_code.created",
        "promotion_code.updated",
    ]


def test_more_event_names_than_one_request_takes_are_split_between_types() -> None:
    many = [ObjectType(f"kind{n}", f"kinds{n}", f"/v1/kinds{n}", (), True) for n in range(8)]
    filters = event_filters(many)
    assert all(len(f["types"]) <= MAX_EVENT_TYPES for f in filters)
    assert [name for f in filters for name in f["types"]] == [
        name for t in many for name in t.event_types
    ]
    for f in filters:  # each type's names stay together
        assert len({name.split(".")[0] for name in f["types"]}) * 3 == len(f["types"])


def test_changes_in_the_older_promotion_code_shape_arrive_through_events(
    warehouse: Warehouse, stripe_emulator: EmulatorServer, client: stripe.StripeClient
) -> None:
    """Events keep the shape of the version they were created in (embedded `coupon`)."""
    account = stripe_emulator.account
    client.v1.coupons.create(params={"id": "OLDWAY", "percent_off": 10, "duration": "once"})
    code = client.v1.promotion_codes.create(
        params={"code": "OLDWAY10", "promotion": {"type": "coupon", "coupon": "OLDWAY"}}
    )
    gone = client.v1.coupons.create(params={"percent_off": 5, "duration": "once"})
    warehouse.run()
    account.set_api_version("2024-06-20")
    client.v1.promotion_codes.update(code.id, params={"active": False})
    client.v1.coupons.update("OLDWAY", params={"metadata": {"campaign": "spring"}})
    client.v1.coupons.delete(gone.id)
    result = warehouse.run()

    events = account.state("event").values()
    (event,) = [e for e in events if e["type"] == "promotion_code.updated"]
    assert "coupon" in event["data"]["object"]  # the older shape, embedded coupon
    codes = warehouse.current("promotion_codes")
    assert codes[code.id]["active"] is False and codes[code.id]["coupon_id"] == "OLDWAY"
    coupons = warehouse.current("coupons")
    assert coupons["OLDWAY"]["metadata"] is not None
    assert coupons[gone.id]["is_deleted"] is True
    changed = {t.table: (t.updated, t.deleted) for t in result.tables}
    assert changed["promotion_codes"] == (1, 0) and changed["coupons"] == (1, 1)


def seed_for_backfill(emulator: EmulatorServer) -> None:
    emulator.account.seed(promotion_codes=1500, coupons=250, products=250)


def loaded_ids(warehouse: Warehouse) -> dict[str, Counter[str]]:
    """How many current-state rows each id has, per table."""
    return {
        table: Counter(
            row["id"]
            for row in warehouse.rows(f"SELECT id FROM stripe.{table} WHERE NOT is_deleted")
        )
        for table in ("coupons", "products", "promotion_codes")
    }


def assert_everything_loaded_once(warehouse: Warehouse, emulator: EmulatorServer) -> None:
    for table, ids in loaded_ids(warehouse).items():
        kind = table.removesuffix("s")
        assert set(ids) == set(emulator.account.state(kind)), table
        assert max(ids.values()) == 1, table


def with_source(warehouse: Warehouse, **options: Any) -> Warehouse:
    settings = warehouse.settings
    return replace(
        warehouse,
        settings=replace(settings, source_options={**settings.source_options, **options}),
    )


def test_a_live_backfill_within_both_limits_meets_almost_no_429s(
    duckdb_warehouse: Warehouse, stripe_emulator: EmulatorServer
) -> None:
    """Stripe's own limits (100/s for the account, 25/s per operation): small pages make a
    backfill of 200 requests, three listings at once."""
    seed_for_backfill(stripe_emulator)
    warehouse = with_source(duckdb_warehouse, api_key=LIVE_KEY, page_size=10)
    result = warehouse.run()
    assert_everything_loaded_once(warehouse, stripe_emulator)
    rejected = sum(stripe_emulator.account.rate_limits.rejected().values())
    assert rejected <= 3, stripe_emulator.account.rate_limits.rejected()
    assert result.stats.requests >= 200


@pytest.mark.parametrize("count_rejected", [True, False])
def test_a_key_shared_with_another_client_still_loads_everything(
    duckdb_warehouse: Warehouse, stripe_emulator: EmulatorServer, count_rejected: bool
) -> None:
    """Stripe allows less than the connector aims at (another client uses the same key): 429s,
    backoff, nothing lost; under both readings of whether a rejected request counts."""
    seed_for_backfill(stripe_emulator)
    stripe_emulator.account.rate_limits.configure(test=12, count_rejected=count_rejected)
    warehouse = with_source(duckdb_warehouse, page_size=20)
    result = warehouse.run()
    assert_everything_loaded_once(warehouse, stripe_emulator)
    assert sum(stripe_emulator.account.rate_limits.rejected().values()) > 0
    assert result.stats.retries > 0


def test_retrieves_count_against_their_own_operation(
    duckdb_warehouse: Warehouse, stripe_emulator: EmulatorServer
) -> None:
    """sync-ids reads 60 coupons by id: `GET /v1/coupons/{id}` is limited on its own."""
    stripe_emulator.account.seed(coupons=60)
    stripe_emulator.account.rate_limits.configure(operations={"GET /v1/coupons/{id}": 10})
    warehouse = with_source(duckdb_warehouse, max_requests_per_second_per_operation=10)
    ids = tuple(stripe_emulator.account.state("coupon"))
    warehouse.run(SyncRequest(mode="sync_by_ids", object_types=("coupon",), ids=ids))
    assert sum(stripe_emulator.account.rate_limits.rejected().values()) <= 2
    assert set(warehouse.current("coupons")) == set(ids)


def test_the_limits_default_to_stripes_and_can_be_set() -> None:
    base = "http://127.0.0.1:12111"
    assert StripeApi(TEST_KEY, base).budget.per_operation == 25
    live = StripeApi(LIVE_KEY, base)
    assert live.rate == 100 and live.budget.per_operation == 25
    tuned = StripeApi(LIVE_KEY, base, max_requests_per_second_per_operation=40)
    assert tuned.budget.per_operation == 40
