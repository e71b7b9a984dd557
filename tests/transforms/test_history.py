"""The history tables (`stripe.<table>_history`) and their "as of" helpers, at the SQL level,
on DuckDB and PostgreSQL: raw observations written through dlt, the transforms run, the
versions read. docs/HISTORY.md states the rules tested here.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import pytest

from stripe_promotions_transforms.runner import run_transforms
from tests.transforms.raw_warehouse import (
    ACCOUNT,
    CREATED,
    OBJECT_TABLES,
    RawWarehouse,
    Seen,
    T,
    audit,
    epoch,
    event,
    gone,
    listing,
    observe,
)

# Columns of a history row that say how and when the pipeline saw the version, not what it
# was: the current version's may differ from the current-state row's (docs/HISTORY.md).
BOOKKEEPING = {"synced_at", "observed_via"}
HISTORY_COLUMNS = {
    "version",
    "valid_from",
    "valid_to",
    "is_current",
    "changed_fields",
    "changed_after",
    "event_id",
}
OTHER = "acct_1Other"
COUPON = {"id": "co_1", "object": "coupon"}


def sync_run(server_time: int, account: str = ACCOUNT) -> dict[str, Any]:
    """A `sync_runs` marker: Stripe's clock at a run's end ("now" for expiry)."""
    return {
        "account_id": account,
        "run_id": f"run:{server_time}",
        "resource": "coupons",
        "server_time": server_time,
    }


def assert_history_invariants(raw: RawWarehouse) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every object's versions: numbered 1..n, in order, without overlap or gap, the last one
    (only) current and equal to the current-state row but for bookkeeping. Returns them."""
    histories = {}
    run_transforms(raw.pipeline, OBJECT_TABLES)
    for table in OBJECT_TABLES:
        history: dict[str, list[dict[str, Any]]] = {}
        for row in raw.rows(f"SELECT * FROM stripe.{table}_history ORDER BY version"):
            history.setdefault(RawWarehouse.name_of(row), []).append(row)
        current = {
            RawWarehouse.name_of(row): row for row in raw.rows(f"SELECT * FROM stripe.{table}")
        }
        assert set(history) == set(current), table
        # The current-state table's columns, with the same types.
        types: dict[str, dict[str, str]] = {}
        for row in raw.rows(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = 'stripe' AND table_name IN ('{table}', '{table}_history')"
        ):
            types.setdefault(row["table_name"], {})[row["column_name"]] = row["data_type"]
        shared_types = {
            c: t for c, t in types[f"{table}_history"].items() if c not in HISTORY_COLUMNS
        }
        assert shared_types == types[table], table
        for name, versions in history.items():
            assert [v["version"] for v in versions] == list(range(1, len(versions) + 1))
            for before, after in pairwise(versions):
                assert before["valid_from"] <= before["valid_to"] == after["valid_from"], name
                assert before["is_current"] is False
            last = versions[-1]
            assert last["is_current"] is True and last["valid_to"] is None, name
            shared = {k: v for k, v in last.items() if k not in HISTORY_COLUMNS | BOOKKEEPING}
            now = {k: v for k, v in current[name].items() if k not in BOOKKEEPING}
            assert shared == now, name
        histories[table] = history
    return histories


def fields(row: Mapping[str, Any] | None, *names: str) -> tuple[Any, ...] | None:
    """Some columns of a row (None for no row)."""
    return None if row is None else tuple(row[n] for n in names)


# -- what makes a version ------------------------------------------------------------------------
def test_events_name_the_fields_they_changed(raw: RawWarehouse) -> None:
    """An event's version: `changed_fields` are the keys of its `previous_attributes` (as
    columns: a code's `restrictions.x` is restrictions_x), exact time, no `changed_after`; a
    creation event is the first version (no changed_fields); a deletion event without
    previous_attributes is compared with the version before."""
    created = event("co_1", T, seq=1, name="first", metadata={}, valid=True, created=CREATED)
    # Its metadata change's event was lost: the event names only what it changed.
    renamed = event(
        "co_1", T + 10, seq=1, name="second", metadata={"k": "v"}, valid=True, created=CREATED
    )
    deleted = event(
        "co_1",
        T + 20,
        seq=1,
        deleted=True,
        name="second",
        metadata={"k": "v"},
        valid=True,
        created=CREATED,
    )
    code: dict[str, Any] = {"code": "SAVE", "coupon": COUPON, "created": CREATED}
    deactivated = event(
        "promo_1",
        T + 30,
        seq=1,
        active=False,
        restrictions={"currency_options": {"eur": {"minimum_amount": 5}}},
        **code,
    )
    archived = event("prod_1", T + 40, seq=1, active=False, name="p", updated=T + 40)
    raw.load(
        coupons=[created, renamed, deleted],
        promotion_codes=[observe("promo_1", T, active=True, **code), deactivated],
        products=[observe("prod_1", T, active=True, name="p", updated=T - 100), archived],
        events=[
            audit(created, "coupon.created"),
            audit(renamed, "coupon.updated", {"name": "first"}),
            audit(deleted, "coupon.deleted"),
            audit(
                deactivated,
                "promotion_code.updated",
                {"active": True, "restrictions": {"currency_options": {}}},
            ),
            audit(archived, "product.updated", {"active": True, "updated": T - 100}),
        ],
    )
    histories = assert_history_invariants(raw)
    first, second, gone_ = histories["coupons"]["co_1"]
    assert first["changed_fields"] is None and first["observed_via"] == "event"
    assert first["event_id"] == created.observation.key
    assert epoch(first["valid_from"]) == T and first["changed_after"] is None
    assert second["changed_fields"] == ["name"]
    assert epoch(second["valid_from"]) == T + 10 and second["changed_after"] is None
    assert gone_["changed_fields"] == [] and gone_["is_deleted"] is True
    assert gone_["deletion_source"] == "event" and epoch(gone_["deleted_at"]) == T + 20
    assert gone_["changed_after"] is None
    code_versions = histories["promotion_codes"]["promo_1"]
    assert code_versions[-1]["changed_fields"] == ["active", "restrictions_currency_options"]
    assert histories["products"]["prod_1"][-1]["changed_fields"] == ["active", "updated"]


def test_a_listing_that_sees_an_unreported_change_adds_a_version(raw: RawWarehouse) -> None:
    """A read showing fields no event reported: a version from the read's time, its
    changed_fields by comparison, `changed_after` the last time the one before was seen."""
    raw.load(
        coupons=[
            observe("co_1", T, name="a", metadata={}, valid=True, created=CREATED),
            observe(
                "co_1", T + 5, via="retrieve", name="a", metadata={}, valid=True, created=CREATED
            ),
            observe(
                "co_1",
                T + 100,
                via="full_listing",
                name="b",
                metadata={"k": "v"},
                valid=True,
                created=CREATED,
            ),
        ]
    )
    before, after = assert_history_invariants(raw)["coupons"]["co_1"]
    assert fields(before, "name", "observed_via") == ("a", "list")
    assert epoch(before["synced_at"]) == T + 5  # last seen holding
    assert fields(after, "name", "observed_via") == ("b", "full_listing")
    assert after["changed_fields"] == ["metadata", "name"]
    assert epoch(after["valid_from"]) == T + 100
    assert epoch(after["changed_after"]) == T + 5


def test_identical_rereads_add_no_version(raw: RawWarehouse) -> None:
    """Re-reads that differ only in how and when they were made are one version, from the
    first of them; synced_at is the last."""
    obj: dict[str, Any] = {
        "name": "same",
        "metadata": {"k": "v"},
        "valid": True,
        "created": CREATED,
    }
    raw.load(
        coupons=[
            observe("co_1", T, **obj),
            event("co_1", T + 3, seq=1, **obj),
            observe("co_1", T + 5, via="retrieve", **obj),
            observe("co_1", T + 9, via="full_listing", **obj),
        ]
    )
    (only,) = assert_history_invariants(raw)["coupons"]["co_1"]
    assert epoch(only["valid_from"]) == T and only["observed_via"] == "list"
    assert epoch(only["synced_at"]) == T + 9
    assert only["changed_fields"] is None


def test_a_batch_patch_is_a_version_with_every_field(raw: RawWarehouse) -> None:
    """A patch carrying only metadata: a version with the other fields carried forward; a
    patch that changes nothing adds none."""
    raw.load(
        coupons=[
            observe(
                "co_1", T, name="kept", percent_off=10.0, metadata={"k": "v0"}, created=CREATED
            ),
            observe("co_1", T + 5, via="batch", patched=["metadata"], metadata={"k": "v1"}),
            observe("co_1", T + 9, via="batch", patched=["metadata"], metadata={"k": "v1"}),
        ]
    )
    first, patched = assert_history_invariants(raw)["coupons"]["co_1"]
    assert first["metadata"] == {"k": "v0"}
    assert fields(patched, "name", "percent_off", "observed_via") == ("kept", 10.0, "batch")
    assert patched["metadata"] == {"k": "v1"} and epoch(patched["created"]) == CREATED
    assert patched["changed_fields"] == ["metadata"]
    assert epoch(patched["valid_from"]) == T + 5 and epoch(patched["synced_at"]) == T + 9


def test_events_of_one_second_are_versions_of_no_duration(raw: RawWarehouse) -> None:
    """Two events in one second: both are versions, the first holding for no time (as of
    that second, the second one holds)."""
    raw.load(
        coupons=[
            observe("co_1", T - 10, name="a", created=CREATED),
            event("co_1", T, seq=1, name="b", created=CREATED),
            event("co_1", T, seq=2, name="c", created=CREATED),
        ]
    )
    versions = assert_history_invariants(raw)["coupons"]["co_1"]
    assert [v["name"] for v in versions] == ["a", "b", "c"]
    assert versions[1]["valid_from"] == versions[1]["valid_to"]
    assert raw.as_of("coupons", T)["co_1"]["name"] == "c"


# -- deletions -----------------------------------------------------------------------------------
def test_a_deletion_is_the_last_version_and_a_comeback_a_new_one(raw: RawWarehouse) -> None:
    """A 404, a manual soft delete, a deletion event: each a version with is_deleted; an
    object observed again after it gets a new live version."""
    raw.load(
        coupons=[
            observe("co_404", T, name="a", percent_off=5.0, created=CREATED),
            gone("co_404", T + 30, seq=1, via="not_found", reason="No such coupon: 'co_404'"),
            observe("co_back", T, name="a", created=CREATED),
            gone("co_back", T + 10, seq=1, via="manual", reason="by mistake"),
            observe("co_back", T + 20, via="retrieve", name="a", created=CREATED),
        ]
    )
    coupons = assert_history_invariants(raw)["coupons"]
    live, deleted = coupons["co_404"]
    assert live["is_deleted"] is False and deleted["is_deleted"] is True
    assert fields(deleted, "name", "percent_off", "deletion_source") == ("a", 5.0, "not_found")
    assert epoch(deleted["valid_from"]) == T + 30 and epoch(deleted["changed_after"]) == T
    assert deleted["changed_fields"] == [] and deleted["status"] == "deleted"
    assert [v["is_deleted"] for v in coupons["co_back"]] == [False, True, False]
    back = coupons["co_back"][-1]
    assert back["deleted_at"] is None and back["deletion_source"] is None
    assert epoch(back["valid_from"]) == T + 20 and back["observed_via"] == "retrieve"


def test_absence_from_the_newest_full_listing_is_a_deletion_at_its_start(
    raw: RawWarehouse,
) -> None:
    """An object the newest complete listing did not list: a last version, deleted at the
    listing's start by `full_listing`; one it listed: no new version."""
    raw.load(
        coupons=[
            observe("co_gone", T, name="unlisted", created=CREATED),
            observe("co_listed", T, name="listed", created=CREATED),
            observe(
                "co_listed", T + 100, seq=6000, via="full_listing", name="listed", created=CREATED
            ),
        ],
        full_listings=[listing("coupon", T + 100, 5000, created_from=CREATED - 500)],
    )
    coupons = assert_history_invariants(raw)["coupons"]
    _, deleted = coupons["co_gone"]
    assert deleted["is_deleted"] is True and deleted["deletion_source"] == "full_listing"
    assert epoch(deleted["valid_from"]) == T + 100 == epoch(deleted["deleted_at"])
    assert epoch(deleted["changed_after"]) == T and deleted["observed_via"] == "full_listing"
    assert deleted["name"] == "unlisted"
    assert len(coupons["co_listed"]) == 1


# -- time-driven changes -------------------------------------------------------------------------
def test_expiry_and_a_coupons_change_cut_versions(raw: RawWarehouse) -> None:
    """A coupon's redeem_by passing (before the last sync) starts a row (`valid` false,
    observed_via `expiry`); a code's coupon turning invalid starts a row of the code
    (`active` false, observed_via `coupon`); a code's expires_at passing starts one too. A
    code observed before its coupon has the coupon as first observed."""
    raw.load(
        coupons=[observe("co_1", T, valid=True, redeem_by=T + 50, created=CREATED)],
        promotion_codes=[
            observe("promo_1", T + 10, code="A", active=True, coupon=COUPON, created=CREATED),
            observe("promo_early", T - 5, code="E", active=True, coupon=COUPON, created=CREATED),
            observe(
                "promo_2",
                T + 10,
                code="B",
                active=True,
                expires_at=T + 30,
                coupon=COUPON,
                created=CREATED,
            ),
        ],
        sync_runs=[sync_run(T + 100)],
    )
    histories = assert_history_invariants(raw)
    valid, expired = histories["coupons"]["co_1"]
    assert fields(valid, "valid", "is_expired", "status") == (True, False, "valid")
    assert fields(expired, "valid", "is_expired", "status") == (False, True, "expired")
    assert epoch(expired["valid_from"]) == T + 50 and expired["observed_via"] == "expiry"
    assert expired["changed_fields"] == ["valid"] and expired["changed_after"] is None
    redeemable, coupon_gone = histories["promotion_codes"]["promo_1"]
    assert fields(redeemable, "active", "is_redeemable", "status") == (True, True, "redeemable")
    assert fields(coupon_gone, "active", "is_redeemable", "status") == (
        False,
        False,
        "coupon_invalid",
    )
    assert epoch(coupon_gone["valid_from"]) == T + 50 and coupon_gone["observed_via"] == "coupon"
    assert coupon_gone["changed_fields"] == ["active"]
    rows = [
        (epoch(v["valid_from"]), v["status"], v["active"], v["observed_via"], v["changed_fields"])
        for v in histories["promotion_codes"]["promo_2"]
    ]
    early = [
        (epoch(v["valid_from"]), v["status"]) for v in histories["promotion_codes"]["promo_early"]
    ]
    assert early == [(T - 5, "redeemable"), (T + 50, "coupon_invalid")]
    # Expired at T + 30 (no field of it changed); at T + 50 its coupon's expiry ends `active`.
    assert rows == [
        (T + 10, "redeemable", True, "list", None),
        (T + 30, "expired", True, "expiry", []),
        (T + 50, "expired", False, "coupon", ["active"]),
    ]


# -- Stripe Connect ------------------------------------------------------------------------------
def test_the_same_id_in_two_accounts_has_two_histories(raw: RawWarehouse) -> None:
    """Each account's observations make its own versions of the id."""
    raw.load(
        coupons=[
            observe("co_1", T, name="own", created=CREATED),
            observe("co_1", T + 1, name="other", created=CREATED, account=OTHER),
            event("co_1", T + 5, seq=1, name="other renamed", created=CREATED, account=OTHER),
            gone("co_1", T + 9, seq=1),
        ]
    )
    coupons = assert_history_invariants(raw)["coupons"]
    assert [(v["name"], v["is_deleted"]) for v in coupons["co_1"]] == [
        ("own", False),
        ("own", True),
    ]
    assert [v["name"] for v in coupons[f"co_1@{OTHER}"]] == ["other", "other renamed"]
    assert {v["account_id"] for v in coupons[f"co_1@{OTHER}"]} == {OTHER}


# -- as of ---------------------------------------------------------------------------------------
def test_as_of_gives_the_state_at_each_time(raw: RawWarehouse) -> None:
    """`stripe.<table>_as_of(ts)` and the documented WHERE clause agree, and give each
    object's state at `ts` (nothing before it was first observed); they survive a rebuild."""
    raw.load(
        coupons=[
            observe("co_1", T, name="a", valid=True, redeem_by=T + 500, created=CREATED),
            event("co_1", T + 100, seq=1, name="b", valid=True, redeem_by=T + 500, created=CREATED),
            gone("co_1", T + 200, seq=1, via="manual", reason="cleanup"),
        ],
        products=[
            observe("prod_1", T + 50, active=True, name="p", created=CREATED),
            event("prod_1", T + 150, seq=1, active=False, name="p", created=CREATED),
        ],
        promotion_codes=[
            observe("promo_1", T, code="A", active=True, coupon=COUPON, created=CREATED),
        ],
        sync_runs=[sync_run(T + 1000)],
    )
    assert_history_invariants(raw)
    raw.history("coupons")  # a second rebuild: the helpers are replaced with the tables
    expected = {
        T - 1: (None, None, None),
        T: (("a", False), None, (True, "redeemable")),
        T + 99: (("a", False), ("active", True), (True, "redeemable")),
        T + 100: (("b", False), ("active", True), (True, "redeemable")),
        T + 150: (("b", False), ("archived", False), (True, "redeemable")),
        T + 200: (("b", True), ("archived", False), (False, "coupon_invalid")),
        T + 5000: (("b", True), ("archived", False), (False, "coupon_invalid")),
    }
    for at, (coupon, product, code) in expected.items():
        states = {table: raw.as_of(table, at) for table in OBJECT_TABLES}
        for table in OBJECT_TABLES:
            assert states[table] == raw.as_of(table, at, helper=False), (table, at)
        assert fields(states["coupons"].get("co_1"), "name", "is_deleted") == coupon, at
        assert fields(states["products"].get("prod_1"), "status", "active") == product, at
        assert fields(states["promotion_codes"].get("promo_1"), "active", "status") == code, at
    # docs/HISTORY.md's count at each month's start, with seconds for months.
    first, last = (datetime.fromtimestamp(at, UTC).isoformat() for at in (T - 100, T + 300))
    counts = raw.rows(
        f"""
        SELECT m.month_start, COUNT(*) FILTER (WHERE h.is_redeemable) AS redeemable
        FROM generate_series(
            TIMESTAMPTZ '{first}', TIMESTAMPTZ '{last}', INTERVAL '100 seconds'
        ) AS m(month_start)
        JOIN stripe.promotion_codes_history AS h
          ON h.valid_from <= m.month_start AND (h.valid_to IS NULL OR h.valid_to > m.month_start)
        GROUP BY m.month_start ORDER BY m.month_start
        """
    )
    assert [(epoch(r["month_start"]), r["redeemable"]) for r in counts] == [
        (T, 1),
        (T + 100, 1),
        (T + 200, 0),
        (T + 300, 0),
    ]


# -- everything at once --------------------------------------------------------------------------
def random_observations(rng: random.Random) -> tuple[dict[str, list[Seen]], list[dict[str, Any]]]:
    """Random observations of a few objects of each type in two accounts (reads, events with
    and without previous_attributes, patches, tombstones, deletion events, same seconds), and
    the events audit rows."""
    seen: dict[str, list[Seen]] = {table: [] for table in OBJECT_TABLES}
    audits: list[dict[str, Any]] = []
    prefixes = {"coupons": "co", "products": "prod", "promotion_codes": "promo"}
    for table, prefix in prefixes.items():
        for number in range(6):
            account = ACCOUNT if number % 3 else OTHER
            object_id = f"{prefix}_{number % 4}"
            at = T + rng.randrange(0, 50)
            for step in range(rng.randrange(1, 9)):
                at += rng.choice([0, 0, 1, 7, 40])
                obj = random_fields(table, rng)
                kind = rng.choice(
                    ["list", "retrieve", "full_listing", "event", "event", "patch", "gone"]
                )
                if kind == "event":
                    deleted = rng.random() < 0.15
                    made = event(object_id, at, step, deleted=deleted, **obj)
                    seen[table].append(Seen(made.observation, made.obj, account))
                    if rng.random() < 0.7:  # an event whose audit row is missing: compared
                        action = "deleted" if deleted else "updated"
                        previous = None if deleted or rng.random() < 0.3 else {"name": "old"}
                        audits.append(audit(seen[table][-1], f"{table[:-1]}.{action}", previous))
                elif kind == "patch":
                    seen[table].append(
                        observe(
                            object_id,
                            at,
                            seq=step,
                            via="batch",
                            patched=["metadata"],
                            metadata=obj["metadata"],
                            account=account,
                        )
                    )
                elif kind == "gone":
                    stone = gone(object_id, at, step, via=rng.choice(["manual", "not_found"]))
                    seen[table].append(Seen(stone.observation, stone.obj, account))
                else:
                    seen[table].append(
                        observe(object_id, at, seq=step, via=kind, account=account, **obj)
                    )
    return seen, audits


def random_fields(table: str, rng: random.Random) -> dict[str, Any]:
    common = {
        "name": rng.choice(["a", "b"]),
        "metadata": {"k": rng.choice(["0", "1"])},
        "created": CREATED,
    }
    if table == "coupons":
        return {
            **common,
            "valid": rng.random() < 0.8,
            "redeem_by": rng.choice([None, T + 30, T + 300]),
            "max_redemptions": rng.choice([None, 2]),
            "times_redeemed": rng.choice([0, 2]),
        }
    if table == "products":
        return {**common, "active": rng.random() < 0.7}
    common.pop("name")
    return {
        **common,
        "code": "CODE",
        "active": rng.random() < 0.8,
        "expires_at": rng.choice([None, T + 20, T + 400]),
        "coupon": {"id": f"co_{rng.randrange(0, 5)}", "object": "coupon"},
    }


@pytest.mark.parametrize("seed", [1, 2])
def test_random_observations_keep_every_invariant(raw: RawWarehouse, seed: int) -> None:
    """Random observations (and a full listing, and a sync): versions in order, contiguous,
    the last one current and equal to the current state; as of any version's start, the
    helper and the WHERE clause give that version."""
    rng = random.Random(seed)
    seen, audits = random_observations(rng)
    raw.load(
        **seen,
        events=audits,
        full_listings=[listing("coupon", T + 150, 0, created_from=CREATED - 1)],
        sync_runs=[sync_run(T + 200)],
    )
    histories = assert_history_invariants(raw)
    starts = sorted(
        {version["valid_from"] for h in histories.values() for vs in h.values() for version in vs}
    )
    for at in starts[:: max(1, len(starts) // 6)]:
        for table, history in histories.items():
            holding = {
                name: v
                for name, versions in history.items()
                for v in versions
                if v["valid_from"] <= at and (v["valid_to"] is None or v["valid_to"] > at)
            }
            second = int(at.timestamp())
            assert raw.as_of(table, second) == holding, (table, at)
            assert raw.as_of(table, second, helper=False) == holding, (table, at)
