"""Read slots keyed by content (docs/OBSERVATIONS.md): a version only a read showed survives
later reads, and a quiet re-listing adds no raw rows. Real runs against the emulator, on
DuckDB and PostgreSQL."""

from __future__ import annotations

from typing import Any

import stripe

from stripe_emulator.server import EmulatorServer
from stripe_promotions import SyncRequest
from tests.support import Warehouse

SYNC_PRODUCTS = SyncRequest("sync_all", ("product",))


def versions(warehouse: Warehouse, product_id: str) -> list[dict[str, Any]]:
    """A product's history rows, oldest first, times as epoch seconds."""
    rows = warehouse.rows(
        "SELECT version, name, valid_from, valid_to, observed_via, synced_at "
        f"FROM stripe.products_history WHERE id = '{product_id}' ORDER BY version"
    )
    for row in rows:
        for name in ("valid_from", "valid_to", "synced_at"):
            row[name] = None if row[name] is None else int(row[name].timestamp())
    return rows


def as_of(warehouse: Warehouse, product_id: str, at: int) -> list[str]:
    """The product's name(s) holding at Stripe's second `at` (the documented predicate)."""
    rows = warehouse.rows(
        f"SELECT name FROM stripe.products_history WHERE id = '{product_id}' "
        f"AND valid_from <= to_timestamp({at}) "
        f"AND (valid_to IS NULL OR valid_to > to_timestamp({at}))"
    )
    return [row["name"] for row in rows]


def raw_rows(warehouse: Warehouse) -> list[tuple[str, str, int]]:
    """Every raw product row: its slot, how it was observed, when."""
    rows = warehouse.rows(
        "SELECT _observation_key, _observed_via, _observed_at FROM stripe_raw.products"
    )
    return sorted((r["_observation_key"], r["_observed_via"], r["_observed_at"]) for r in rows)


def test_a_version_only_a_listing_showed_survives_a_later_listing(
    warehouse: Warehouse, stripe_emulator: EmulatorServer, client: stripe.StripeClient
) -> None:
    """Listed at t1 as A (its creation event too old for any run to read), renamed to B by
    an event at t2, listed again at t3: A stays the first version, from t1 (with one slot per
    way of reading, t3's listing replaced t1's and A was gone). Listing it again unchanged
    adds no raw row: it refills the slot, which moves the version's `synced_at`."""
    account, clock = stripe_emulator.account, stripe_emulator.account.clock
    clock.freeze()
    client.v1.products.create(params={"id": "prod_mug", "name": "A"})
    account.advance_clock(600)  # the creation event is older than any run reads
    t1 = int(clock.now())
    warehouse.run(SYNC_PRODUCTS)
    account.advance_clock(60)
    t2 = int(clock.now())
    client.v1.products.update("prod_mug", params={"name": "B"})
    account.advance_clock(60)
    warehouse.run()  # reads the event
    account.advance_clock(60)
    t3 = int(clock.now())
    warehouse.run(SYNC_PRODUCTS)

    history = versions(warehouse, "prod_mug")
    assert [(v["name"], v["valid_from"], v["valid_to"]) for v in history] == [
        ("A", t1, t2),
        ("B", t2, None),
    ]
    assert [v["observed_via"] for v in history] == ["full_listing", "event"]
    assert history[1]["synced_at"] == t3
    assert as_of(warehouse, "prod_mug", t1) == as_of(warehouse, "prod_mug", t2 - 1) == ["A"]
    assert as_of(warehouse, "prod_mug", t3) == ["B"]
    listed = [(key, at) for key, via, at in raw_rows(warehouse) if via == "full_listing"]
    assert sorted(at for _, at in listed) == [t1, t3]  # A's slot and B's
    assert all(key.startswith("full_listing:") for key, _ in listed)

    # A quiet re-listing: the same content refills its slot, the raw table does not grow.
    before = raw_rows(warehouse)
    account.advance_clock(60)
    t4 = int(clock.now())
    warehouse.run(SYNC_PRODUCTS)
    after = raw_rows(warehouse)
    assert len(after) == len(before)
    assert {key for key, _, _ in after} == {key for key, _, _ in before}
    assert sorted(at for _, via, at in after if via == "full_listing") == [t1, t4]
    again = versions(warehouse, "prod_mug")
    assert [(v["name"], v["valid_from"]) for v in again] == [("A", t1), ("B", t2)]
    assert again[-1]["synced_at"] == t4
