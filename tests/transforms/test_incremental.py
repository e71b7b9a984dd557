"""Incremental transforms, at the SQL level, on DuckDB and PostgreSQL: a run recomputes only
the objects that moved, and its tables equal a full rebuild's after any sequence of loads
(random observations loaded in random order and batches, full listings, syncs whose clock
passes deadlines), including `stripe.*_history` and the promotion codes of changed coupons.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from stripe_promotions_transforms import TableChanges
from stripe_promotions_transforms.incremental import STATE_TABLE
from stripe_promotions_transforms.runner import run_transforms
from tests.transforms.raw_warehouse import (
    CREATED,
    OBJECT_TABLES,
    RawWarehouse,
    T,
    event,
    listing,
    observe,
)
from tests.transforms.test_history import random_observations, sync_run

TABLES = [name for table in OBJECT_TABLES for name in (table, f"{table}_history")]


def transform(raw: RawWarehouse, full: bool = False) -> dict[str, TableChanges]:
    """One run of the transforms; what it reported, by table."""
    return {c.table: c for c in run_transforms(raw.pipeline, OBJECT_TABLES, full=full)}


def tables(raw: RawWarehouse) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every current-state and history table, in a stable order."""
    found = {}
    for table in TABLES:
        rows = raw.rows(f"SELECT * FROM stripe.{table}")
        found[table] = sorted((tuple(sorted(row.items())) for row in rows), key=repr)
    return found


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_runs_equal_a_full_rebuild(raw: RawWarehouse, seed: int) -> None:
    """Random observations loaded in a random order over several loads, with full listings
    and syncs moving the clock past coupons' redeem_by and codes' expires_at: after every
    load, the incremental run's tables equal those `full=True` rebuilds from scratch."""
    rng = random.Random(seed)
    seen, audits = random_observations(rng)
    loads: list[dict[str, list[Any]]] = [
        {key: [] for key in (*OBJECT_TABLES, "events", "full_listings", "sync_runs")}
        for _ in range(6)
    ]
    for table, observations in seen.items():
        for observation in observations:
            loads[rng.randrange(len(loads))][table].append(observation)
    for row in audits:
        loads[rng.randrange(len(loads))]["events"].append(row)
    clock = T
    for number, load in enumerate(loads):
        clock += rng.choice([5, 20, 60, 200])
        load["sync_runs"].append(sync_run(clock))
        if rng.random() < 0.4:
            object_type = rng.choice(list(OBJECT_TABLES.values()))
            load["full_listings"].append(listing(object_type, clock - 3, number, CREATED - 1))
    transform_after = [bool(rng.random() < 0.7) for _ in loads]
    transform_after[0] = True  # the first run rebuilds: incremental runs follow
    for load, then in zip(loads, transform_after, strict=True):
        raw.load(**load)
        if not then:
            continue  # the next run applies two loads at once
        transform(raw)
        incremental = tables(raw)
        transform(raw, full=True)
        assert tables(raw) == incremental


def test_a_run_recomputes_only_what_moved(raw: RawWarehouse) -> None:
    """One event among many objects: one object recomputed, in its table alone; a run with
    nothing new recomputes nothing; the codes of a coupon whose `valid` changed are
    recomputed, the codes of a coupon renamed are not."""
    coupon: dict[str, Any] = {"valid": True, "created": CREATED}
    raw.load(
        coupons=[observe(f"co_{n}", T, name="c", **coupon) for n in range(5)],
        products=[observe(f"prod_{n}", T, active=True, created=CREATED) for n in range(5)],
        promotion_codes=[
            observe(
                f"promo_{n}",
                T,
                code=f"C{n}",
                active=True,
                created=CREATED,
                coupon={"id": f"co_{n % 2}", "object": "coupon"},
            )
            for n in range(6)
        ],
        sync_runs=[sync_run(T + 1)],
    )
    first = transform(raw)
    assert [first[t].recomputed for t in OBJECT_TABLES] == [5, 5, 6]

    raw.load(products=[event("prod_3", T + 10, 1, active=False, created=CREATED)])
    second = transform(raw)
    assert [second[t].recomputed for t in OBJECT_TABLES] == [0, 1, 0]
    assert (second["products"].updated, second["products"].rows) == (1, 5)

    assert [c.recomputed for c in transform(raw).values()] == [0, 0, 0]

    raw.load(coupons=[event("co_0", T + 20, 1, name="renamed", **coupon)])
    renamed = transform(raw)
    assert [renamed[t].recomputed for t in OBJECT_TABLES] == [1, 0, 0]

    raw.load(coupons=[event("co_1", T + 30, 1, name="c", valid=False, created=CREATED)])
    invalid = transform(raw)
    # co_1's codes: promo_1, promo_3, promo_5, now coupon_invalid.
    assert [invalid[t].recomputed for t in OBJECT_TABLES] == [1, 0, 3]
    assert invalid["promotion_codes"].updated == 3
    before = tables(raw)
    transform(raw, full=True)
    assert tables(raw) == before


def test_the_clock_passing_a_deadline_recomputes_those_objects(raw: RawWarehouse) -> None:
    """A sync whose clock passes a coupon's redeem_by recomputes that coupon (now expired)
    and its codes, and a code whose expires_at passed: no observation of them needed."""
    raw.load(
        coupons=[
            observe("co_soon", T, valid=True, redeem_by=T + 100, created=CREATED),
            observe("co_later", T, valid=True, redeem_by=T + 10_000, created=CREATED),
        ],
        promotion_codes=[
            observe("promo_a", T, code="A", active=True, created=CREATED, coupon="co_soon"),
            observe(
                "promo_b",
                T,
                code="B",
                active=True,
                created=CREATED,
                coupon="co_later",
                expires_at=T + 200,
            ),
            observe("promo_c", T, code="C", active=True, created=CREATED, coupon="co_later"),
        ],
        sync_runs=[sync_run(T + 1)],
    )
    transform(raw)
    raw.load(sync_runs=[sync_run(T + 150)])
    passed = transform(raw)
    assert [passed[t].recomputed for t in OBJECT_TABLES] == [1, 0, 1]
    raw.load(sync_runs=[sync_run(T + 250)])
    expired = transform(raw)
    assert [expired[t].recomputed for t in OBJECT_TABLES] == [0, 0, 1]
    statuses = {r["id"]: r["status"] for r in raw.rows("SELECT * FROM stripe.promotion_codes")}
    assert statuses == {"promo_a": "coupon_invalid", "promo_b": "expired", "promo_c": "redeemable"}
    before = tables(raw)
    transform(raw, full=True)
    assert tables(raw) == before


def test_a_newer_full_listing_recomputes_what_it_may_find_absent(raw: RawWarehouse) -> None:
    """A full listing flags the objects last observed before it started: those are
    recomputed, and flagged deleted; the objects it listed are recomputed and stay live."""
    raw.load(
        products=[observe(f"prod_{n}", T, active=True, created=CREATED) for n in range(4)],
        sync_runs=[sync_run(T + 1)],
    )
    transform(raw)
    raw.load(
        products=[
            observe(f"prod_{n}", T + 50, via="full_listing", active=True, created=CREATED)
            for n in range(2)
        ],
        full_listings=[listing("product", T + 49, 0, CREATED - 1)],
        sync_runs=[sync_run(T + 51)],
    )
    listed = transform(raw)["products"]
    assert (listed.recomputed, listed.deleted, listed.deleted_rows) == (4, 2, 2)


def test_a_rebuild_when_sql_changes_or_loads_vanish(raw: RawWarehouse, isolated: Path) -> None:
    """New SQL (or new raw columns) rebuilds every object once; so does a raw dataset whose
    applied loads vanished (restored from a backup): the destination is the truth."""
    raw.load(
        coupons=[observe(f"co_{n}", T, valid=True, created=CREATED) for n in range(3)],
        sync_runs=[sync_run(T + 1)],
    )
    transform(raw)
    assert transform(raw)["coupons"].recomputed == 0
    sql = Path(__file__).parents[2] / "transforms" / "stripe_promotions_transforms"
    altered = isolated / "sql"
    altered.mkdir()
    for path in sql.glob("*.sql"):
        (altered / path.name).write_text(
            path.read_text() + ("\n" if path.name == "coupons.sql" else "")
        )
    changes = run_transforms(raw.pipeline, OBJECT_TABLES, sql_dir=altered)
    assert changes[0].recomputed == 3
    assert run_transforms(raw.pipeline, OBJECT_TABLES, sql_dir=altered)[0].recomputed == 0
    with raw.pipeline.sql_client() as client:
        client.execute_sql(f"INSERT INTO stripe.{STATE_TABLE} (load_id) VALUES ('1.5')")
    assert run_transforms(raw.pipeline, OBJECT_TABLES, sql_dir=altered)[0].recomputed == 3
