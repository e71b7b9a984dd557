"""The source and the four verbs against the emulator over HTTP, on DuckDB and PostgreSQL."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
import stripe

import stripe_promotions_pipeline
import stripe_promotions_pipeline.runner
import stripe_promotions_transforms
from stripe_emulator import Account
from stripe_emulator.server import EmulatorServer
from stripe_promotions import BatchError, SyncRequest
from stripe_promotions_pipeline import RunError
from stripe_promotions_pipeline import coupons as coupon_verbs
from stripe_promotions_pipeline.tuning import (
    DUCKDB_GLOBAL_CONFIG,
    RUN_GC_THRESHOLDS,
    duckdb_settings,
    rare_gc_pauses,
    usable_cores,
)
from tests.support import TEST_KEY, Warehouse, as_json, setup_client

DAY = 24 * 3600


def new_coupon(client: stripe.StripeClient, coupon_id: str, **params: Any) -> stripe.Coupon:
    fields: Any = {"id": coupon_id, "percent_off": 10, "duration": "once", **params}
    return client.v1.coupons.create(params=fields)


def product_coupon(
    client: stripe.StripeClient, coupon_id: str, product_id: str, **params: Any
) -> stripe.Coupon:
    """$5 off once, for one product: a coupon with fields events leave out (`applies_to`)."""
    fields: Any = {
        "id": coupon_id,
        "amount_off": 500,
        "currency": "usd",
        "duration": "once",
        "applies_to": {"products": [product_id]},
        **params,
    }
    return client.v1.coupons.create(params=fields)


def new_code(client: stripe.StripeClient, coupon_id: str, code: str) -> stripe.PromotionCode:
    return client.v1.promotion_codes.create(
        params={"code": code, "promotion": {"type": "coupon", "coupon": coupon_id}}
    )


@pytest.mark.parametrize("order", ["insertion", "shuffled"])
def test_same_second_boundary_neither_lost_nor_duplicated(
    warehouse: Warehouse, stripe_emulator: EmulatorServer, client: stripe.StripeClient, order: str
) -> None:
    """Stripe does not say how objects of one second are ordered: under either reading."""
    stripe_emulator.account.set_same_second_order(order)
    stripe_emulator.account.clock.freeze()
    for n in range(3):
        new_coupon(client, f"FIRST{n}")
    warehouse.run()
    listed_first = (
        "SELECT id, _observed_sequence FROM stripe_raw.coupons WHERE _observed_via = 'list'"
    )
    first = {row["id"]: row["_observed_sequence"] for row in warehouse.rows(listed_first)}
    for n in range(2):  # same second as the cursor: `created[gte]` sees the first three again
        new_coupon(client, f"LATER{n}")
    warehouse.run()
    listed = warehouse.rows(
        "SELECT id, COUNT(*) AS n FROM stripe_raw.coupons WHERE _observed_via = 'list' GROUP BY id"
    )
    assert {row["id"]: row["n"] for row in listed} == {
        **{f"FIRST{n}": 1 for n in range(3)},
        **{f"LATER{n}": 1 for n in range(2)},
    }
    # Not listed again either (a re-read of unchanged content would refill its slot).
    again = {row["id"]: row["_observed_sequence"] for row in warehouse.rows(listed_first)}
    assert {i: again[i] for i in first} == first
    assert set(warehouse.current("coupons")) == {"FIRST0", "FIRST1", "FIRST2", "LATER0", "LATER1"}


def test_updates_reach_the_tables_through_events(
    warehouse: Warehouse, stripe_emulator: EmulatorServer, client: stripe.StripeClient
) -> None:
    new_coupon(client, "SPRING", max_redemptions=5)
    product = client.v1.products.create(params={"name": "T-shirt"})
    code = new_code(client, "SPRING", "SPRING10")
    other = new_code(client, "SPRING", "SPRING20")
    warehouse.run()

    client.v1.coupons.update("SPRING", params={"metadata": {"order_id": "6735"}})
    client.v1.products.update(product.id, params={"active": False})
    client.v1.promotion_codes.update(code.id, params={"active": False})
    stripe_emulator.account.redeem(other.id)
    result = warehouse.run()

    coupon = warehouse.current("coupons")["SPRING"]
    assert as_json(coupon["metadata"]) == {"order_id": "6735"}
    assert coupon["times_redeemed"] == 1
    assert warehouse.current("products")[product.id]["active"] is False
    assert warehouse.current("products")[product.id]["status"] == "archived"
    codes = warehouse.current("promotion_codes")
    assert codes[code.id]["active"] is False and codes[code.id]["status"] == "deactivated"
    assert codes[other.id]["times_redeemed"] == 1 and codes[other.id]["is_redeemable"] is True
    changed = {t.table: t.updated for t in result.tables}
    assert changed == {"coupons": 1, "products": 1, "promotion_codes": 2}
    # 4 reads, plus the changed coupon read again for what events leave out (applies_to, ...)
    assert result.stats.requests == 5


def test_coupons_changed_through_events_keep_their_expandable_fields(
    warehouse: Warehouse, client: stripe.StripeClient
) -> None:
    product = client.v1.products.create(params={"name": "Hat"})
    product_coupon(client, "EUROS", product.id, currency_options={"eur": {"amount_off": 450}})
    warehouse.run()
    client.v1.coupons.update("EUROS", params={"currency_options": {"gbp": {"amount_off": 400}}})
    warehouse.run()
    coupon = warehouse.current("coupons")["EUROS"]
    assert as_json(coupon["applies_to"]) == {"products": [product.id]}
    assert as_json(coupon["currency_options"]) == {
        "eur": {"amount_off": 450},
        "gbp": {"amount_off": 400},
        "usd": {"amount_off": 500},
    }


def test_fields_events_leave_out_are_kept_in_every_version(
    warehouse: Warehouse, client: stripe.StripeClient
) -> None:
    """A coupon's events carry no applies_to or currency_options: they are no change, and a
    renamed or deleted coupon keeps them in its history and its current row."""
    product = client.v1.products.create(params={"name": "Hat"})
    product_coupon(client, "EUROS", product.id, currency_options={"eur": {"amount_off": 450}})
    warehouse.run()
    client.v1.coupons.update("EUROS", params={"name": "Euros"})
    warehouse.run()
    client.v1.coupons.delete("EUROS")
    warehouse.run()
    versions = warehouse.rows(
        "SELECT * FROM stripe.coupons_history WHERE id = 'EUROS' ORDER BY version"
    )
    shown = [(v["version"], v["name"], v["is_deleted"], v["changed_fields"]) for v in versions]
    assert [(n, name, deleted) for n, name, deleted, _ in shown] == [
        (1, None, False),
        (2, "Euros", False),
        (3, "Euros", True),
    ], shown
    assert as_json(versions[1]["changed_fields"]) == ["name"]
    kept = {"products": [product.id]}
    assert all(as_json(v["applies_to"]) == kept for v in versions), versions
    assert all(as_json(v["currency_options"])["eur"] == {"amount_off": 450} for v in versions)
    coupon = warehouse.current("coupons")["EUROS"]
    assert coupon["is_deleted"] is True and as_json(coupon["applies_to"]) == kept


def test_deletions_through_events(warehouse: Warehouse, client: stripe.StripeClient) -> None:
    new_coupon(client, "GONE")
    new_coupon(client, "STAYS")
    product = client.v1.products.create(params={"name": "Mug"})
    warehouse.run()
    client.v1.coupons.delete("GONE")
    client.v1.products.delete(product.id)
    result = warehouse.run()

    coupons = warehouse.current("coupons")
    assert coupons["GONE"]["is_deleted"] is True
    assert coupons["GONE"]["deletion_source"] == "event"
    assert coupons["GONE"]["deleted_at"] is not None
    assert coupons["GONE"]["valid"] is False
    assert coupons["STAYS"]["is_deleted"] is False and coupons["STAYS"]["deleted_at"] is None
    assert warehouse.current("products")[product.id]["is_deleted"] is True
    assert {t.table: t.deleted for t in result.tables}["coupons"] == 1


def test_object_created_and_deleted_between_runs_is_still_recorded(
    warehouse: Warehouse, client: stripe.StripeClient
) -> None:
    warehouse.run()
    new_coupon(client, "BRIEF")
    client.v1.coupons.delete("BRIEF")
    warehouse.run()
    assert warehouse.current("coupons")["BRIEF"]["is_deleted"] is True


def test_gap_past_retention_lists_everything_and_catches_deletions(
    warehouse: Warehouse, stripe_emulator: EmulatorServer, client: stripe.StripeClient
) -> None:
    new_coupon(client, "OLD")
    new_coupon(client, "EDITED")
    warehouse.run()
    client.v1.coupons.delete("OLD")
    client.v1.coupons.update("EDITED", params={"name": "Edited in the gap"})
    stripe_emulator.account.advance_clock(31 * DAY)  # the events of both changes age out

    result = warehouse.run()

    assert any("30 days" in note for note in result.notes)
    coupons = warehouse.current("coupons")
    assert coupons["OLD"]["is_deleted"] is True
    assert coupons["OLD"]["deletion_source"] == "full_listing"
    assert coupons["EDITED"]["name"] == "Edited in the gap"
    # The cursor restarted at the listing: the next quiet run is cheap again.
    assert warehouse.run().stats.requests <= 4


def test_sync_all_flags_objects_no_longer_listed(
    warehouse: Warehouse, stripe_emulator: EmulatorServer, client: stripe.StripeClient
) -> None:
    stripe_emulator.account.set_event_delay(10**6)  # events never show up: only listing can tell
    for name in ("KEEP", "DROP"):
        new_coupon(client, name)
    warehouse.run()
    client.v1.coupons.delete("DROP")
    result = warehouse.run(SyncRequest("sync_all", ("coupon",)))
    coupons = warehouse.current("coupons")
    assert coupons["DROP"]["is_deleted"] is True
    assert coupons["DROP"]["deletion_source"] == "full_listing"
    assert coupons["KEEP"]["is_deleted"] is False
    assert {t.table: t.deleted for t in result.tables}["coupons"] == 1


def test_sync_by_ids_refreshes_tombstones_deleted_ids_and_records_no_typo(
    warehouse: Warehouse, stripe_emulator: EmulatorServer, client: stripe.StripeClient
) -> None:
    stripe_emulator.account.set_event_delay(10**6)
    new_coupon(client, "LIVE")
    new_coupon(client, "DEAD")
    warehouse.run()
    client.v1.coupons.update("LIVE", params={"name": "Renamed"})
    client.v1.coupons.delete("DEAD")
    result = warehouse.run(SyncRequest("sync_by_ids", ("coupon",), ids=("LIVE", "DEAD", "NEVER")))
    coupons = warehouse.current("coupons")
    assert coupons["LIVE"]["name"] == "Renamed"
    assert coupons["DEAD"]["is_deleted"] is True
    assert coupons["DEAD"]["deletion_source"] == "not_found"
    # An id neither Stripe nor the pipeline ever knew is a typo, not a deletion.
    assert "NEVER" not in coupons
    assert not warehouse.rows("SELECT * FROM stripe_raw.coupons WHERE id = 'NEVER'")
    assert any("'NEVER'" in note and "nothing recorded" in note for note in result.notes)


def test_soft_delete_of_an_id_never_seen_is_refused_unless_forced(
    warehouse: Warehouse, client: stripe.StripeClient
) -> None:
    new_coupon(client, "REAL")
    warehouse.run()
    with pytest.raises(RunError, match="Never seen by this pipeline: coupon 'TYPO'"):
        coupon_verbs.soft_delete(["REAL", "TYPO"], **_options(warehouse))
    assert warehouse.current("coupons")["REAL"]["is_deleted"] is False  # nothing loaded
    assert "TYPO" not in warehouse.current("coupons")
    coupon_verbs.soft_delete("TYPO", force=True, **_options(warehouse))
    assert warehouse.current("coupons")["TYPO"]["is_deleted"] is True


def test_sync_batch_loads_objects_and_webhook_events(
    warehouse: Warehouse, client: stripe.StripeClient, tmp_path: Path
) -> None:
    coupon = new_coupon(client, "BATCHED").to_dict()
    deleted_event = {
        "id": "evt_saved_webhook",
        "object": "event",
        "type": "coupon.deleted",
        "created": coupon["created"] + 5,
        "api_version": "2026-10-28.endive",
        "data": {"object": {**coupon, "id": "WEBHOOKED"}},
    }
    batch = tmp_path / "batch.jsonl"
    batch.write_text(json.dumps(coupon) + "\n" + json.dumps(deleted_event) + "\n")
    coupon_verbs.sync_batch(batch, **_options(warehouse))
    coupons = warehouse.current("coupons")
    assert coupons["BATCHED"]["is_deleted"] is False
    assert coupons["WEBHOOKED"]["is_deleted"] is True


@pytest.mark.parametrize(
    ("items", "named"),
    [
        ([{"object": "product", "id": "prod_1", "created": 1}], ["item 0", "'product'"]),
        ([{"object": "coupon", "created": 1}], ["item 0", "`id`"]),
        ([{"object": "coupon", "id": "A", "created": "yesterday"}], ["item 0 (A)", "`created`"]),
        (
            [
                {"object": "coupon", "id": "GOOD", "created": 1},
                {"object": "coupon", "id": "B", "created": 1.5},
                "not an object",
            ],
            ["item 1 (B)", "item 2", "2 bad item(s) of 3"],
        ),
        (
            [
                {"object": "coupon", "id": "TWICE", "created": 1, "name": "a"},
                {"object": "coupon", "id": "TWICE", "created": 1, "name": "b"},
            ],
            ["item 1 (TWICE)", "conflicts"],
        ),
    ],
)
def test_bad_batches_are_rejected_whole(
    warehouse: Warehouse, items: list[object], named: list[str]
) -> None:
    warehouse.run()
    before = warehouse.rows("SELECT COUNT(*) AS n FROM stripe_raw.coupons")[0]["n"]
    with pytest.raises(BatchError) as error:
        coupon_verbs.sync_batch(items, **_options(warehouse))  # type: ignore[arg-type]
    for fragment in named:
        assert fragment in str(error.value)
    assert warehouse.rows("SELECT COUNT(*) AS n FROM stripe_raw.coupons")[0]["n"] == before


def test_soft_delete_until_seen_again(
    warehouse: Warehouse, stripe_emulator: EmulatorServer, client: stripe.StripeClient
) -> None:
    new_coupon(client, "HAND")
    warehouse.run()
    coupon_verbs.soft_delete("HAND", reason="retired by finance", **_options(warehouse))
    row = warehouse.current("coupons")["HAND"]
    assert row["is_deleted"] is True
    assert row["deletion_source"] == "manual" and row["deletion_reason"] == "retired by finance"
    stripe_emulator.account.advance_clock(2)
    coupon_verbs.sync_by_ids(["HAND"], **_options(warehouse))  # Stripe still has it
    assert warehouse.current("coupons")["HAND"]["is_deleted"] is False


def test_both_promotion_code_shapes_in_one_run(
    warehouse: Warehouse, stripe_emulator: EmulatorServer, client: stripe.StripeClient
) -> None:
    new_coupon(client, "SHAPES")
    warehouse.run()
    account = stripe_emulator.account
    account.set_api_version("2024-06-20")  # events now render codes with an embedded coupon
    old_client = setup_client(stripe_emulator.url, "2024-06-20")
    old_params: Any = {"coupon": "SHAPES", "code": "OLDSHAPE"}  # the pre-2025-09-30 way
    old = old_client.v1.promotion_codes.create(params=old_params)
    account.set_api_version("2026-10-28.endive")
    new = new_code(client, "SHAPES", "NEWSHAPE")
    shapes = {e["data"]["object"]["code"]: e["data"]["object"] for e in _events(account)}
    assert "coupon" in shapes["OLDSHAPE"] and "promotion" not in shapes["OLDSHAPE"]
    assert shapes["NEWSHAPE"]["promotion"]["coupon"] == "SHAPES"

    warehouse.run()
    codes = warehouse.current("promotion_codes")
    assert codes[old.id]["coupon_id"] == "SHAPES"
    assert codes[new.id]["coupon_id"] == "SHAPES"


def test_a_quiet_run_costs_at_most_four_requests(
    warehouse: Warehouse, stripe_emulator: EmulatorServer
) -> None:
    stripe_emulator.account.seed(preset="demo")
    warehouse.run()
    stripe_emulator.account.requests.clear()
    result = warehouse.run()
    assert sum(stripe_emulator.account.requests.values()) <= 4
    assert result.stats.requests == sum(stripe_emulator.account.requests.values())
    assert all(t.new == t.updated == t.deleted == 0 for t in result.tables)


def duckdb_setting(warehouse: Warehouse, name: str) -> Any:
    """A setting of the DuckDB connections the pipeline opens (the load's and the transforms')."""
    return warehouse.rows(f"SELECT current_setting('{name}') AS value")[0]["value"]


def duckdb_rendering(memory_limit: str) -> str:
    """How DuckDB shows a memory limit once set (`75MB` reads back as `71.5 MiB`)."""
    connection = duckdb.connect()
    connection.execute(f"SET memory_limit = '{memory_limit}'")
    row = connection.execute("SELECT current_setting('memory_limit')").fetchone()
    assert row is not None
    return str(row[0])


def test_duckdb_gets_the_usable_cores_and_a_memory_limit(duckdb_warehouse: Warehouse) -> None:
    duckdb_warehouse.run()
    assert duckdb_setting(duckdb_warehouse, "threads") == usable_cores()
    ours = duckdb_rendering(duckdb_settings()["memory_limit"])
    assert duckdb_setting(duckdb_warehouse, "memory_limit") == ours


def test_a_users_own_duckdb_settings_win(
    duckdb_warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DUCKDB_GLOBAL_CONFIG, json.dumps({"threads": 1}))
    duckdb_warehouse.run()
    assert duckdb_setting(duckdb_warehouse, "threads") == 1
    ours = duckdb_rendering(duckdb_settings()["memory_limit"])
    assert duckdb_setting(duckdb_warehouse, "memory_limit") != ours


def test_a_retrieval_made_for_an_event_outranks_the_event_in_the_same_second(
    warehouse: Warehouse, client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    # Everything in one second of Stripe's clock: the event's snapshot (without applies_to
    # and currency_options) and the coupon read again for them must not tie against it.
    stripe_emulator.account.clock.freeze()
    product = client.v1.products.create(params={"name": "Hat"})
    product_coupon(client, "SAMESECOND", product.id)
    warehouse.run()
    client.v1.coupons.update("SAMESECOND", params={"metadata": {"campaign": "spring"}})
    gone = new_coupon(client, "GONE")
    warehouse.run()
    client.v1.coupons.delete(gone.id)
    warehouse.run()
    coupons = warehouse.current("coupons")
    assert as_json(coupons["SAMESECOND"]["applies_to"]) == {"products": [product.id]}
    assert as_json(coupons["SAMESECOND"]["metadata"]) == {"campaign": "spring"}
    assert coupons["GONE"]["is_deleted"] is True


def test_a_run_collects_cycles_rarely_and_restores_the_callers_gc_settings(
    duckdb_warehouse: Warehouse, stripe_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    during: list[tuple[int, ...]] = []
    transform = stripe_promotions_transforms.run_transforms

    def watched(*args: Any) -> Any:
        during.append(gc.get_threshold())
        return transform(*args)

    monkeypatch.setattr(stripe_promotions_pipeline.runner, "run_transforms", watched)
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        duckdb_warehouse.run()
        assert during == [RUN_GC_THRESHOLDS]
        assert gc.get_threshold() == (700, 10, 10)
        stripe_emulator.account.keys.set_access(TEST_KEY, "revoked")
        with pytest.raises(RunError, match="refused the API key"):
            duckdb_warehouse.run()
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*before)


def test_higher_gc_thresholds_and_a_disabled_collector_are_kept() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(100_000, 5, 50)
        with rare_gc_pauses():
            assert gc.get_threshold() == (100_000, RUN_GC_THRESHOLDS[1], 50)
        assert gc.get_threshold() == (100_000, 5, 50)
        gc.set_threshold(0)  # threshold 0 turns automatic collection off
        with rare_gc_pauses():
            assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*before)


def _events(account: Account) -> list[dict[str, Any]]:
    """Promotion code events as the emulator recorded them."""
    events = account.events
    return [
        events.render(r, "") for r in events.live_records() if r.type.startswith("promotion_code")
    ]


def _options(warehouse: Warehouse) -> dict[str, Any]:
    settings = warehouse.settings
    return {
        "destination": settings.destination,
        "api_base": settings.api_base,
        "pipelines_dir": settings.pipelines_dir,
        "duckdb_file": settings.duckdb_file,
    }


def test_a_404_is_stamped_with_stripes_clock(
    warehouse: Warehouse, stripe_emulator: EmulatorServer, client: stripe.StripeClient
) -> None:
    """Sync by ids of a product Stripe deleted, in a run where every answer is a 404: the
    tombstone carries the 404's Date, not the local clock. (Stamped locally, with Stripe's
    clock ahead, it was older than the listing before it, and the product stayed live.)"""
    product = client.v1.products.create(params={"name": "Mug"})
    stripe_emulator.account.advance_clock(600)  # Stripe's clock ten minutes ahead of ours
    warehouse.run()
    client.v1.products.delete(product.id)
    warehouse.run(SyncRequest("sync_by_ids", ("product",), ids=(product.id,)))
    row = warehouse.current("products")[product.id]
    assert row["is_deleted"] is True and row["deletion_source"] == "not_found"
    assert abs(row["deleted_at"].timestamp() - stripe_emulator.account.clock.now()) < 60
