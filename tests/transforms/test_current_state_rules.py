"""Every ranking, tie and deletion rule of docs/OBSERVATIONS.md, at the SQL level, on DuckDB and
PostgreSQL: raw observations written through dlt, the transforms run, the current state read.

Observations are ranked newest first by (`_observed_at`, `_observed_rank`, `_observed_sequence`)
with ranks READ=1 < EVENT=2 < DELETION=3; each test is one rule, with two to four observations.
"""

from __future__ import annotations

from stripe_promotions.observation import Rank
from tests.transforms.raw_warehouse import (
    CREATED,
    RawWarehouse,
    T,
    epoch,
    event,
    gone,
    listing,
    observe,
)


# -- ranking: second, then rank, then sequence ---------------------------------------------------
def test_a_later_second_wins_whatever_the_load_order(raw: RawWarehouse) -> None:
    """A later second wins, even when it was loaded before the older observation."""
    raw.load(
        coupons=[
            observe("co_newer_first", T + 10, name="newer", created=CREATED),
            observe("co_older_first", T, name="older", created=CREATED),
        ]
    )
    raw.load(
        coupons=[
            observe("co_newer_first", T, seq=999, via="retrieve", name="older", created=CREATED),
            observe("co_older_first", T + 10, via="retrieve", name="newer", created=CREATED),
        ]
    )
    coupons = raw.current("coupons")
    for coupon_id in ("co_newer_first", "co_older_first"):
        assert coupons[coupon_id]["name"] == "newer"
        assert epoch(coupons[coupon_id]["synced_at"]) == T + 10
    assert coupons["co_newer_first"]["observed_via"] == "list"
    assert coupons["co_older_first"]["observed_via"] == "retrieve"


def test_an_event_beats_a_read_of_the_same_second_with_a_higher_sequence(
    raw: RawWarehouse,
) -> None:
    """Same second: an event (rank 2) beats a read (rank 1), whatever their sequences."""
    raw.load(
        coupons=[
            observe("co_1", T, Rank.READ, seq=900, via="list", name="read", created=CREATED),
            event("co_1", T, seq=5, name="event", created=CREATED),
        ]
    )
    coupon = raw.current("coupons")["co_1"]
    assert coupon["name"] == "event"
    assert coupon["observed_via"] == "event"
    assert coupon["is_deleted"] is False


def test_soft_delete_wins_against_an_event_of_the_same_second(raw: RawWarehouse) -> None:
    """Same second: a manual soft delete (rank 3) beats an event of that second, whatever the
    sequences, and keeps the fields the event showed."""
    raw.load(
        coupons=[
            observe("co_1", T - 60, name="before", percent_off=10.0, created=CREATED),
            event("co_1", T, seq=10**18, name="renamed", percent_off=10.0, created=CREATED),
            gone("co_1", T, seq=1, via="manual", reason="duplicate of co_2"),
        ]
    )
    coupon = raw.current("coupons")["co_1"]
    assert coupon["is_deleted"] is True
    assert coupon["deletion_source"] == "manual"
    assert coupon["deletion_reason"] == "duplicate of co_2"
    assert epoch(coupon["deleted_at"]) == T
    assert coupon["observed_via"] == "manual"
    assert coupon["name"] == "renamed"
    assert coupon["status"] == "deleted"


def test_a_404_or_batch_deletion_wins_against_an_event_of_the_same_second(
    raw: RawWarehouse,
) -> None:
    """Same second: any deletion (404, batch `deleted`) beats an event of that second."""
    raw.load(
        coupons=[
            event("co_404", T, seq=500, name="evented", created=CREATED),
            gone("co_404", T, seq=1, via="not_found", reason="No such coupon: 'co_404'"),
            event("co_batch", T, seq=500, name="evented", created=CREATED),
            gone("co_batch", T, seq=1, via="batch"),
        ]
    )
    coupons = raw.current("coupons")
    assert coupons["co_404"]["is_deleted"] is True
    assert coupons["co_404"]["deletion_source"] == "not_found"
    assert coupons["co_batch"]["is_deleted"] is True
    assert coupons["co_batch"]["deletion_source"] == "batch"
    assert coupons["co_batch"]["name"] == "evented"


def test_within_a_second_and_rank_the_higher_sequence_wins(raw: RawWarehouse) -> None:
    """Same second and rank: the higher sequence wins, for reads (page order) and events
    (Stripe's order)."""
    raw.load(
        coupons=[
            observe("co_reads", T, seq=2, via="retrieve", name="second page", created=CREATED),
            observe("co_reads", T, seq=1, via="list", name="first page", created=CREATED),
            event("co_events", T, seq=8, name="eighth", created=CREATED),
            event("co_events", T, seq=7, name="seventh", created=CREATED),
        ]
    )
    coupons = raw.current("coupons")
    assert coupons["co_reads"]["name"] == "second page"
    assert coupons["co_reads"]["observed_via"] == "retrieve"
    assert coupons["co_events"]["name"] == "eighth"


def test_a_reread_after_a_runs_events_beats_those_events(raw: RawWarehouse) -> None:
    """A re-read after a run's events (rank 2, a higher sequence) beats those events."""
    raw.load(
        coupons=[
            event("co_1", T, seq=100, name="first change", times_redeemed=1, created=CREATED),
            event("co_1", T, seq=101, name="second change", times_redeemed=1, created=CREATED),
            observe(
                "co_1",
                T,
                Rank.EVENT,
                200,
                "retrieve",
                name="re-read",
                times_redeemed=3,
                created=CREATED,
            ),
        ]
    )
    coupon = raw.current("coupons")["co_1"]
    assert coupon["name"] == "re-read"
    assert coupon["times_redeemed"] == 3
    assert coupon["observed_via"] == "retrieve"


# -- deletions -----------------------------------------------------------------------------------
def test_a_deletion_event_deletes_with_the_fields_it_showed(raw: RawWarehouse) -> None:
    """A `*.deleted` event: deleted at the event's second, source `event`, its fields."""
    raw.load(
        coupons=[
            observe("co_1", T, name="live", percent_off=10.0, valid=True, created=CREATED),
            event(
                "co_1",
                T + 5,
                seq=1,
                deleted=True,
                name="final",
                percent_off=15.0,
                valid=True,
                created=CREATED,
            ),
        ]
    )
    coupon = raw.current("coupons")["co_1"]
    assert coupon["is_deleted"] is True
    assert epoch(coupon["deleted_at"]) == T + 5
    assert coupon["deletion_source"] == "event"
    assert coupon["deletion_reason"] is None
    assert coupon["name"] == "final"
    assert coupon["percent_off"] == 15.0
    assert coupon["observed_via"] == "event"
    assert coupon["valid"] is False
    assert coupon["status"] == "deleted"


def test_a_404_tombstone_keeps_the_last_observed_fields(raw: RawWarehouse) -> None:
    """A 404 carries no fields: the last observed ones stay, with its time and message."""
    raw.load(
        coupons=[
            observe(
                "co_1",
                T,
                name="kept",
                percent_off=25.0,
                metadata={"team": "growth"},
                created=CREATED,
            ),
            gone("co_1", T + 30, seq=1, via="not_found", reason="No such coupon: 'co_1'"),
        ]
    )
    coupon = raw.current("coupons")["co_1"]
    assert coupon["is_deleted"] is True
    assert coupon["deletion_source"] == "not_found"
    assert coupon["deletion_reason"] == "No such coupon: 'co_1'"
    assert epoch(coupon["deleted_at"]) == T + 30
    assert coupon["name"] == "kept"
    assert coupon["percent_off"] == 25.0
    assert coupon["metadata"] == {"team": "growth"}
    assert epoch(coupon["created"]) == CREATED
    assert coupon["observed_via"] == "not_found"
    assert epoch(coupon["synced_at"]) == T + 30


def test_a_later_observation_clears_a_deletion(raw: RawWarehouse) -> None:
    """An object observed again after its deletion came back: no longer deleted."""
    raw.load(
        coupons=[
            event("co_read_back", T, seq=1, deleted=True, name="gone", created=CREATED),
            observe("co_read_back", T + 10, name="back", created=CREATED),
            gone("co_evented_back", T, seq=1, via="manual", reason="by mistake"),
            event("co_evented_back", T + 1, seq=1, name="updated", created=CREATED),
        ]
    )
    coupons = raw.current("coupons")
    for coupon_id, name in (("co_read_back", "back"), ("co_evented_back", "updated")):
        assert coupons[coupon_id]["is_deleted"] is False
        assert coupons[coupon_id]["deleted_at"] is None
        assert coupons[coupon_id]["deletion_source"] is None
        assert coupons[coupon_id]["deletion_reason"] is None
        assert coupons[coupon_id]["name"] == name


def test_a_tombstone_for_an_id_never_observed_gives_a_deleted_row_of_nulls(
    raw: RawWarehouse,
) -> None:
    """A soft delete of an id never otherwise observed (`--force`): null fields, deleted."""
    raw.load(coupons=[gone("co_ghost", T, seq=1, via="manual", reason="forced")])
    coupon = raw.current("coupons")["co_ghost"]
    assert coupon["is_deleted"] is True
    assert coupon["deletion_source"] == "manual"
    assert coupon["deletion_reason"] == "forced"
    assert epoch(coupon["deleted_at"]) == T
    assert coupon["name"] is None
    assert coupon["percent_off"] is None
    assert coupon["created"] is None
    assert coupon["metadata"] is None


# -- partial observations ------------------------------------------------------------------------
def test_a_batch_patch_changes_only_its_fields(raw: RawWarehouse) -> None:
    """A newer patch changes only its fields, the rest come from the newest complete
    observation; a patch older than a complete observation is ignored."""
    raw.load(
        coupons=[
            observe(
                "co_patched",
                T,
                name="first",
                percent_off=10.0,
                metadata={"k": "v0"},
                created=CREATED,
            ),
            observe(
                "co_patched",
                T + 2,
                via="retrieve",
                name="second",
                percent_off=20.0,
                metadata={"k": "v1"},
                created=CREATED,
            ),
            observe(
                "co_patched", T + 5, via="batch", patched=["metadata"], metadata={"k": "patched"}
            ),
            observe("co_stale", T, via="batch", patched=["metadata"], metadata={"k": "stale"}),
            observe(
                "co_stale",
                T + 5,
                name="complete",
                percent_off=30.0,
                metadata={"k": "current"},
                created=CREATED,
            ),
        ]
    )
    coupons = raw.current("coupons")
    patched = coupons["co_patched"]
    assert patched["metadata"] == {"k": "patched"}
    assert patched["name"] == "second"
    assert patched["percent_off"] == 20.0
    assert epoch(patched["created"]) == CREATED
    assert patched["observed_via"] == "batch"
    assert epoch(patched["synced_at"]) == T + 5
    stale = coupons["co_stale"]
    assert stale["metadata"] == {"k": "current"}
    assert stale["name"] == "complete"
    assert stale["observed_via"] == "list"


# -- full listings -------------------------------------------------------------------------------
def test_an_object_missing_from_a_full_listing_is_deleted_at_its_start(
    raw: RawWarehouse,
) -> None:
    """Last observed before the listing's start and created since `created_from`: deleted
    at the listing's start by `full_listing`; created before `created_from`: not flagged."""
    raw.load(
        coupons=[
            observe("co_gone", T, name="unlisted", created=CREATED),
            observe("co_listed", T, name="listed", created=CREATED),
            observe(
                "co_listed", T + 100, seq=6000, via="full_listing", name="listed", created=CREATED
            ),
            observe("co_older", T, name="before created_from", created=CREATED - 1000),
        ],
        full_listings=[listing("coupon", T + 100, 5000, created_from=CREATED - 500)],
    )
    coupons = raw.current("coupons")
    assert coupons["co_gone"]["is_deleted"] is True
    assert coupons["co_gone"]["deletion_source"] == "full_listing"
    assert epoch(coupons["co_gone"]["deleted_at"]) == T + 100
    assert coupons["co_gone"]["deletion_reason"] is None
    assert coupons["co_gone"]["name"] == "unlisted"
    for coupon_id in ("co_listed", "co_older"):
        assert coupons[coupon_id]["is_deleted"] is False
        assert coupons[coupon_id]["deletion_source"] is None
        assert coupons[coupon_id]["deleted_at"] is None


def test_an_object_whose_created_nobody_observed_counts_as_listable(raw: RawWarehouse) -> None:
    """A batch patch of an id never read (no `created` observed) before a full listing that
    did not list it: gone, like any object the listing covers; listed after it: present."""
    raw.load(
        coupons=[
            observe("co_patched", T, via="batch", patched=["metadata"], metadata='{"k":"v"}'),
            observe("co_late", T + 200, via="batch", patched=["metadata"], metadata="{}"),
        ],
        full_listings=[listing("coupon", T + 100, 5000, created_from=CREATED - 500)],
    )
    coupons = raw.current("coupons")
    assert coupons["co_patched"]["is_deleted"] is True
    assert coupons["co_patched"]["deletion_source"] == "full_listing"
    assert coupons["co_patched"]["created"] is None
    assert coupons["co_late"]["is_deleted"] is False


def test_only_the_newest_full_listing_of_the_type_counts(raw: RawWarehouse) -> None:
    """An older listing that would flag an object does not; the newest one decides."""
    raw.load(
        coupons=[
            # Missing from the older listing (created_from 0); before the newest one's range.
            observe("co_early", T, created=CREATED),
            # Missing from both: deleted at the newest listing's start.
            observe("co_recent", T, created=CREATED + 10_000),
        ],
        full_listings=[
            listing("coupon", T + 200, 1, created_from=0),
            listing("coupon", T + 300, 1, created_from=CREATED + 5_000),
        ],
    )
    coupons = raw.current("coupons")
    assert coupons["co_early"]["is_deleted"] is False
    assert coupons["co_recent"]["is_deleted"] is True
    assert coupons["co_recent"]["deletion_source"] == "full_listing"
    assert epoch(coupons["co_recent"]["deleted_at"]) == T + 300


def test_a_full_listing_of_another_type_does_not_flag_this_type(raw: RawWarehouse) -> None:
    """A product listing says nothing about coupons."""
    raw.load(
        coupons=[observe("co_1", T, created=CREATED)],
        products=[observe("prod_1", T, active=True, created=CREATED)],
        full_listings=[listing("product", T + 100, 1)],
    )
    assert raw.current("coupons")["co_1"]["is_deleted"] is False
    product = raw.current("products")["prod_1"]
    assert product["is_deleted"] is True
    assert product["deletion_source"] == "full_listing"


def test_a_listing_start_in_the_same_second_orders_reads_by_sequence(raw: RawWarehouse) -> None:
    """Listing start in an observation's second: a read with a lower sequence is missing, a
    read with a higher sequence is present, an event of that second is present."""
    raw.load(
        coupons=[
            observe("co_read_before", T, seq=4999, created=CREATED),
            observe("co_read_after", T, seq=5001, via="full_listing", created=CREATED),
            event("co_event", T, seq=1, created=CREATED),
        ],
        full_listings=[listing("coupon", T, 5000)],
    )
    coupons = raw.current("coupons")
    assert coupons["co_read_before"]["is_deleted"] is True
    assert coupons["co_read_before"]["deletion_source"] == "full_listing"
    assert epoch(coupons["co_read_before"]["deleted_at"]) == T
    assert coupons["co_read_after"]["is_deleted"] is False
    assert coupons["co_event"]["is_deleted"] is False


# -- other object types --------------------------------------------------------------------------
def test_a_promotion_codes_coupon_survives_a_tombstone(raw: RawWarehouse) -> None:
    """A promotion code's `coupon_id` (and code) survive a 404 that carries no fields."""
    raw.load(
        coupons=[observe("co_1", T, valid=True, created=CREATED)],
        promotion_codes=[
            observe(
                "promo_1",
                T,
                code="SAVE10",
                active=True,
                created=CREATED,
                coupon={"id": "co_1", "object": "coupon"},
            ),
            gone("promo_1", T + 10, seq=1, via="not_found", reason="No such promotion code"),
        ],
    )
    code = raw.current("promotion_codes")["promo_1"]
    assert code["coupon_id"] == "co_1"
    assert code["code"] == "SAVE10"
    assert code["is_deleted"] is True
    assert code["deletion_source"] == "not_found"
    assert code["status"] == "deleted"


def test_a_products_active_comes_from_its_newest_observation(raw: RawWarehouse) -> None:
    """A product's `active` is the newest observation's, also under a later patch."""
    raw.load(
        products=[
            observe("prod_archived", T, active=True, name="p", created=CREATED),
            event("prod_archived", T + 5, seq=1, active=False, name="p", created=CREATED),
            observe("prod_archived", T + 9, via="batch", patched=["metadata"], metadata={"a": "1"}),
            event("prod_restored", T, seq=1, active=False, name="q", created=CREATED),
            observe("prod_restored", T + 20, active=True, name="q", created=CREATED),
        ]
    )
    products = raw.current("products")
    assert products["prod_archived"]["active"] is False
    assert products["prod_archived"]["status"] == "archived"
    assert products["prod_archived"]["metadata"] == {"a": "1"}
    assert products["prod_restored"]["active"] is True
    assert products["prod_restored"]["status"] == "active"


# -- Stripe Connect: an object is its account and its id ---------------------------------------
def test_the_same_id_in_two_accounts_is_two_objects(raw: RawWarehouse) -> None:
    """Each account's observations rank among themselves: a newer event in one account does
    not replace the other's object, nor does one account's deletion delete the other's."""
    other = "acct_1Other"
    raw.load(
        coupons=[
            observe("co_1", T, name="own", valid=True, created=CREATED),
            observe("co_1", T + 1, name="other", valid=True, created=CREATED, account=other),
            event(
                "co_1",
                T + 5,
                seq=1,
                name="other renamed",
                valid=True,
                created=CREATED,
                account=other,
            ),
            gone("co_1", T + 9, seq=1),
        ],
        promotion_codes=[
            observe(
                "promo_1",
                T,
                code="OTHER",
                active=True,
                created=CREATED,
                coupon={"id": "co_1", "object": "coupon"},
                account=other,
            )
        ],
    )
    coupons = raw.current("coupons")
    assert coupons["co_1"]["name"] == "own" and coupons["co_1"]["is_deleted"] is True
    theirs = coupons[f"co_1@{other}"]
    assert theirs["name"] == "other renamed" and theirs["is_deleted"] is False
    # A code joins its own account's coupon (valid there), not the deleted one of the same id.
    assert raw.current("promotion_codes")[f"promo_1@{other}"]["status"] == "redeemable"


def test_a_full_listing_flags_only_its_own_accounts_objects(raw: RawWarehouse) -> None:
    """A complete listing of one account says nothing about another account's objects."""
    other = "acct_1Other"
    raw.load(
        coupons=[
            observe("co_mine", T, created=CREATED),
            observe("co_theirs", T, created=CREATED, account=other),
        ],
        full_listings=[listing("coupon", T + 100, 1, account=other)],
    )
    coupons = raw.current("coupons")
    assert coupons["co_mine"]["is_deleted"] is False
    assert coupons[f"co_theirs@{other}"]["is_deleted"] is True
