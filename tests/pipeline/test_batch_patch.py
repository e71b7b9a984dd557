"""Batch items with only some fields (patches), as django-stripe's seeds send them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import stripe

from stripe_emulator.server import EmulatorServer
from stripe_promotions import BatchError
from stripe_promotions.batch import validate_batch
from stripe_promotions.rows import patched_fields
from stripe_promotions_pipeline import coupons, products
from tests.pipeline.test_sync import _options, new_coupon
from tests.support import Warehouse, as_json, run_command

# The seeds' own call in django-stripe, item for item.
SEEDS = [
    {"id": "prod_123456789", "name": "Product 1", "description": "test product"},
    {"id": "prod_987654321", "name": "Product 2", "description": "test product"},
]


def test_the_django_stripe_seeds_load_as_patches(warehouse: Warehouse) -> None:
    result = products.sync_batch(SEEDS, **_options(warehouse))
    rows = warehouse.current("products")
    assert set(rows) == {"prod_123456789", "prod_987654321"}
    seeded = rows["prod_123456789"]
    assert (seeded["name"], seeded["description"]) == ("Product 1", "test product")
    # Nobody observed these yet: null until a listing or a retrieve supplies them.
    assert seeded["created"] is None and seeded["active"] is None and seeded["status"] is None
    assert seeded["is_deleted"] is False and seeded["observed_via"] == "batch"
    assert {t.table: (t.new, t.updated, t.deleted) for t in result.tables}["products"] == (2, 0, 0)


def test_a_full_listing_flags_patched_ids_stripe_does_not_have(warehouse: Warehouse) -> None:
    products.sync_batch(SEEDS, **_options(warehouse))
    result = products.sync_all(**_options(warehouse))
    seeded = warehouse.current("products")["prod_123456789"]
    assert seeded["is_deleted"] is True and seeded["deletion_source"] == "full_listing"
    assert {t.table: t.deleted for t in result.tables}["products"] == 2


def test_sync_batch_command_takes_patches(
    warehouse: Warehouse, stripe_emulator: EmulatorServer, tmp_path: Path
) -> None:
    seeds = tmp_path / "seeds.json"
    seeds.write_text(json.dumps(SEEDS))
    if warehouse.name == "postgres":
        where = {
            "DESTINATION__POSTGRES__CREDENTIALS": os.environ["DESTINATION__POSTGRES__CREDENTIALS"]
        }
    else:
        where = {"DESTINATION__DUCKDB__CREDENTIALS": str(warehouse.settings.duckdb_file)}
    done = run_command(
        *("--destination", warehouse.name, "--api-base", stripe_emulator.url, "--quiet"),
        *("sync-batch", "--type", "product", str(seeds)),
        cwd=tmp_path,
        env=where,
    )
    assert done.returncode == 0, done.stderr
    rows = warehouse.current("products")
    assert rows["prod_987654321"]["name"] == "Product 2"
    assert rows["prod_987654321"]["created"] is None


def test_a_patch_changes_only_its_fields_until_a_later_listing(
    warehouse: Warehouse, stripe_emulator: EmulatorServer, client: stripe.StripeClient
) -> None:
    # Stripe's clock stands still: the patch is newer than the listing only by the local clock.
    stripe_emulator.account.clock.freeze()
    product = client.v1.products.create(
        params={"name": "Mug", "description": "Blue", "url": "https://example.com/mug"}
    )
    client.v1.products.update(product.id, params={"metadata": {"size": "L"}})
    warehouse.run()
    listed = warehouse.current("products")[product.id]

    result = products.sync_batch(
        [{"id": product.id, "name": "Cup", "description": None}], **_options(warehouse)
    )
    row = warehouse.current("products")[product.id]
    assert (row["name"], row["description"]) == ("Cup", None)  # an explicit null is a value
    kept = ("created", "updated", "active", "url", "type", "livemode", "status")
    assert {f: row[f] for f in kept} == {f: listed[f] for f in kept}
    assert as_json(row["metadata"]) == {"size": "L"}
    assert {t.table: (t.new, t.updated) for t in result.tables}["products"] == (0, 1)

    stripe_emulator.account.advance_clock(60)
    result = products.sync_all(**_options(warehouse))
    row = warehouse.current("products")[product.id]
    assert (row["name"], row["description"], row["observed_via"]) == ("Mug", "Blue", "full_listing")
    assert {t.table: (t.new, t.updated) for t in result.tables}["products"] == (0, 1)


def test_a_patch_older_than_the_listing_does_not_win(
    warehouse: Warehouse, client: stripe.StripeClient
) -> None:
    product = client.v1.products.create(params={"name": "Hat", "description": "Wool"})
    warehouse.run()
    # A product's `updated` is when the item was observed: this one predates the listing.
    stale = {"id": product.id, "name": "Cap", "updated": product.updated - 60}
    result = products.sync_batch([stale], **_options(warehouse))
    row = warehouse.current("products")[product.id]
    assert (row["name"], row["description"]) == ("Hat", "Wool")
    assert row["updated"].timestamp() == product.updated
    assert {t.table: (t.new, t.updated) for t in result.tables}["products"] == (0, 0)


def test_patches_of_one_object_add_up_and_a_listing_supplies_the_rest(
    warehouse: Warehouse, client: stripe.StripeClient
) -> None:
    coupon = new_coupon(client, "EARLY", name="Early bird", metadata={"campaign": "spring"})
    coupons.sync_batch([{"id": "EARLY", "name": "Renamed"}], **_options(warehouse))
    coupons.sync_batch([{"id": "EARLY", "max_redemptions": 5}], **_options(warehouse))
    row = warehouse.current("coupons")["EARLY"]
    assert (row["name"], row["max_redemptions"]) == ("Renamed", 5)
    assert row["created"] is None and row["percent_off"] is None
    assert row["is_deleted"] is False

    warehouse.run()  # the listing is newer than both patches: every field is Stripe's now
    row = warehouse.current("coupons")["EARLY"]
    assert row["created"].timestamp() == coupon.created
    assert (row["name"], row["max_redemptions"], row["percent_off"]) == ("Early bird", None, 10)
    assert as_json(row["metadata"]) == {"campaign": "spring"}


def test_a_deletion_still_beats_an_older_patch(warehouse: Warehouse) -> None:
    coupons.sync_batch([{"id": "GONE", "name": "Soon gone"}], **_options(warehouse))
    coupons.sync_batch([{"id": "GONE", "deleted": True}], **_options(warehouse))
    row = warehouse.current("coupons")["GONE"]
    assert row["is_deleted"] is True and row["deletion_source"] == "batch"
    assert row["name"] == "Soon gone"


@pytest.mark.parametrize(
    ("items", "named"),
    [
        (
            [{"id": "prod_1", "name": "Mug"}, {"id": "prod_2", "object": "coupon"}],
            ["1 bad item(s) of 2", "item 1 (prod_2): `object` is 'coupon', expected 'product'"],
        ),
        (
            [{"id": "prod_1", "created": "2024-01-01"}, {"id": "prod_2", "created": None}],
            [
                "item 0 (prod_1): `created` is '2024-01-01', expected an integer unix time",
                "item 1 (prod_2): `created` is None",
            ],
        ),
        (
            [{"name": "Mug"}, {"id": "", "name": "Mug"}, {"id": "prod_3", "active": "yes"}],
            [
                "item 0: `id` is missing",
                "item 1: `id` is '', expected a non-empty string",
                "item 2 (prod_3): `active` is 'yes', expected true or false or null",
            ],
        ),
        (
            [
                {
                    "id": "evt_1",
                    "object": "event",
                    "type": "product.updated",
                    "created": 1,
                    "data": {"object": {"id": "prod_1", "name": "Mug"}},
                }
            ],
            ["item 0 (evt_1)", "data.object `object` is missing", "`created` is missing"],
        ),
    ],
)
def test_bad_items_are_named_and_the_batch_refused(
    warehouse: Warehouse, items: list[dict[str, Any]], named: list[str]
) -> None:
    warehouse.run()
    with pytest.raises(BatchError) as error:
        products.sync_batch(items, **_options(warehouse))
    for fragment in named:
        assert fragment in str(error.value)
    assert not warehouse.rows("SELECT id FROM stripe_raw.products")


def test_an_item_needs_only_its_id() -> None:
    assert validate_batch("product", [{"id": "prod_1"}, {"id": "prod_2", "object": "product"}])
    assert validate_batch("coupon", [{"id": "GONE", "deleted": True}])


def test_which_items_are_patches(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "Mug"}).to_dict()
    assert patched_fields("product", product) is None  # complete: it replaces every field
    assert patched_fields("product", {"id": "p", "name": "Mug", "object": "product"}) == ("name",)
    code: dict[str, Any] = {
        "id": "promo_1",
        "promotion": {"type": "coupon", "coupon": "C"},
        "restrictions": {"minimum_amount": 500},
    }
    assert patched_fields("promotion_code", code) == (
        "coupon_id",
        "promotion_type",
        "restrictions_minimum_amount",
    )
