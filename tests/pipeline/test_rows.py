"""Objects to Arrow rows: one canonical row whichever API version rendered the object."""

from __future__ import annotations

from typing import Any

from stripe_promotions import RunStats
from stripe_promotions.client import Page
from stripe_promotions.observation import Observation, Rank, read
from stripe_promotions.resources import observed_tables
from stripe_promotions.rows import objects_table
from stripe_promotions.settings import OBJECT_TYPES

SEEN = Observation(1_700_000_100, Rank.READ, 42, "list", "list", "2026-10-28.endive")
LATER = Observation(1_700_000_200, Rank.READ, 43, "retrieve", "retrieve", "2026-10-28.endive")

RESTRICTIONS = {
    "currency_options": {"usd": {"minimum_amount": 500}},
    "first_time_transaction": True,
    "minimum_amount": 500,
    "minimum_amount_currency": "usd",
}
# The same code as API versions before and from 2025-09-30 render it.
OLD_SHAPE = {
    "id": "promo_old",
    "object": "promotion_code",
    "code": "SPRING",
    "coupon": {"id": "SPRING25", "object": "coupon", "percent_off": 25},
    "customer": {"id": "cus_1", "object": "customer"},
    "metadata": {"b": "2", "a": "1"},
    "restrictions": RESTRICTIONS,
    "created": 1_700_000_000,
}
NEW_SHAPE = {
    **{k: v for k, v in OLD_SHAPE.items() if k != "coupon"},
    "id": "promo_new",
    "customer": "cus_1",
    "promotion": {"type": "coupon", "coupon": "SPRING25"},
}


def rows(object_type: str, chunks: list[tuple[Observation, list[Any]]]) -> list[dict[str, Any]]:
    return objects_table(object_type, chunks).to_pylist()  # type: ignore[no-any-return]


def test_both_promotion_code_shapes_give_the_same_row() -> None:
    old, new = rows("promotion_code", [(SEEN, [OLD_SHAPE, NEW_SHAPE])])
    assert old.pop("id") == "promo_old" and new.pop("id") == "promo_new"
    assert old == new
    assert old["coupon_id"] == "SPRING25"
    assert old["promotion_type"] == "coupon"
    assert old["customer"] == "cus_1"
    assert old["metadata"] == '{"a":"1","b":"2"}'  # sorted keys: equal maps compare equal
    assert old["restrictions_currency_options"] == '{"usd":{"minimum_amount":500}}'
    assert old["restrictions_first_time_transaction"] is True
    assert old["restrictions_minimum_amount"] == 500
    assert "coupon" not in old and "promotion" not in old and "restrictions" not in old


def test_each_row_carries_its_chunks_observation() -> None:
    first, second = rows("promotion_code", [(SEEN, [OLD_SHAPE]), (LATER, [NEW_SHAPE])])
    observed = ("_observed_at", "_observed_via", "_observed_rank", "_observed_sequence")
    assert tuple(first[c] for c in observed) == (1_700_000_100, "list", 1, 42)
    assert first["_deleted"] is False and first["_deletion_source"] is None
    assert (second["_observed_at"], second["_observation_key"]) == (1_700_000_200, "retrieve")


def test_unknown_fields_become_text_and_expanded_ids_become_ids() -> None:
    product = {
        "id": "prod_1",
        "object": "product",
        "name": "Hat",
        "default_price": {"id": "price_1", "object": "price"},
        "marketing_features": [{"name": "warm"}],
        "brand_new_field": {"nested": [1, 2]},
        "brand_new_number": 7,
        "created": 1_700_000_000,
    }
    (row,) = rows("product", [(SEEN, [product])])
    assert row["default_price"] == "price_1"
    assert row["brand_new_field"] == '{"nested":[1,2]}'
    assert row["brand_new_number"] == "7"  # text, so a later change of type cannot fail a load
    table = objects_table("product", [(SEEN, [product])])
    assert str(table.schema.field("brand_new_number").type) == "string"


def test_an_empty_table_has_every_declared_column() -> None:
    table = objects_table("coupon", [])
    assert table.num_rows == 0
    assert {"id", "percent_off", "metadata", "_observed_at", "_observation_key"} <= set(
        table.column_names
    )


def test_pages_with_different_unknown_fields_make_one_table() -> None:
    first = {"id": "prod_1", "object": "product", "created": 1_700_000_001, "brand_new": "x"}
    second = {"id": "prod_2", "object": "product", "created": 1_700_000_000}
    pages = [Page([first], True, 1_700_000_100), Page([], True, 1_700_000_100)]
    pages.append(Page([second], False, 1_700_000_101))
    stats = RunStats()
    (table,) = observed_tables(OBJECT_TYPES["product"], pages, "list", "2026-10-28.endive", stats)
    assert all(column.num_chunks == 1 for column in table.columns)  # contiguous, for dlt
    by_id = {row["id"]: row for row in table.to_pylist()}
    assert by_id["prod_1"]["brand_new"] == "x" and by_id["prod_2"]["brand_new"] is None
    assert by_id["prod_2"]["_observed_at"] == 1_700_000_101
    assert stats.rows["products/list"] == 2


def test_a_reads_slot_is_its_way_and_its_content() -> None:
    """`<via>:<digest>`: the same content (in any key order) gets the same slot, changed
    content another; rows of events keep their own key."""
    seen = read(1_700_000_100, 42, "full_listing", "2026-10-28.endive")
    renamed = {**NEW_SHAPE, "metadata": {"a": "1", "b": "3"}}
    reordered = dict(reversed(list(NEW_SHAPE.items())))
    event = Observation(1_700_000_101, Rank.EVENT, 7, "event", "evt_1", "2026-10-28.endive")
    first, again, changed, evented = rows(
        "promotion_code", [(seen, [NEW_SHAPE, reordered, renamed]), (event, [renamed])]
    )
    assert first["_observation_key"] == again["_observation_key"]
    assert first["_observation_key"] != changed["_observation_key"]
    assert first["_observation_key"].startswith("full_listing:")
    assert len(first["_observation_key"]) == len("full_listing:") + 16
    assert evented["_observation_key"] == "evt_1"
    assert {r["_observed_via"] for r in (first, again, changed)} == {"full_listing"}
