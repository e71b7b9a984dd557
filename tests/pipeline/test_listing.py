"""Parallel listings over HTTP: every object exactly once, whatever the windows, 429s or deletions.

These drive the connector's listings (`Lister.list_pages`) directly against the emulator,
with small pages so that one listing is cut into many windows fetched by many threads.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import stripe

from stripe_emulator.server import EmulatorServer
from stripe_promotions.client import StripeApi
from stripe_promotions.listing import Lister
from tests.support import TEST_KEY


def api(emulator: EmulatorServer, **options: Any) -> StripeApi:
    """The connector's client with small pages; unless a test sets limits, neither it nor the
    emulator limits the rate (these tests are about windows, not about Stripe's limits)."""
    fast = {"max_requests_per_second": 1000.0, "max_requests_per_second_per_operation": 1000.0}
    if not any(name.startswith("max_requests") for name in options):
        emulator.account.rate_limits.configure(enabled=False)
    return StripeApi(TEST_KEY, emulator.url, **{**fast, "page_size": 10, **options})


def listed(client: StripeApi, path: str) -> Counter[str]:
    """How many times the listing yielded each id."""
    pages = Lister(client).list_pages(path)
    return Counter(obj["id"] for page in pages for obj in page.objects)


def test_a_year_of_codes_cut_into_windows_comes_back_exactly_once(
    stripe_emulator: EmulatorServer,
) -> None:
    stripe_emulator.account.seed(promotion_codes=3000, coupons=50, products=50)
    client = api(stripe_emulator, max_workers=8)
    ids = listed(client, "/v1/promotion_codes")
    assert set(ids) == set(stripe_emulator.account.state("promotion_code"))
    assert max(ids.values()) == 1
    pages = 300
    # Cut into windows: each ends in a part-filled page, so there are a few more requests than
    # pages, but far fewer than one per window of a fixed grid would make.
    assert pages < client.requests_made < pages * 1.3


@pytest.mark.parametrize("order", ["insertion", "shuffled"])
def test_hundreds_of_objects_in_one_second_split_nowhere_and_lose_nothing(
    stripe_emulator: EmulatorServer, client: stripe.StripeClient, order: str
) -> None:
    """Stripe does not say how objects of one second are ordered: under either reading."""
    stripe_emulator.account.set_same_second_order(order)
    stripe_emulator.account.seed(products=400)
    stripe_emulator.account.clock.freeze()
    for n in range(120):  # one second: no window can be cut inside it
        client.v1.products.create(params={"name": f"Dense {n}"})
    ids = listed(api(stripe_emulator, max_workers=8), "/v1/products")
    assert set(ids) == set(stripe_emulator.account.state("product"))
    assert max(ids.values()) == 1


def test_429s_are_retried_and_no_page_is_lost(stripe_emulator: EmulatorServer) -> None:
    stripe_emulator.account.seed(promotion_codes=2000, coupons=20, products=20)
    stripe_emulator.account.rate_limits.configure(test=40, operation=40)
    client = api(
        stripe_emulator,
        max_requests_per_second=200,
        max_requests_per_second_per_operation=200,
        max_workers=16,
    )
    ids = listed(client, "/v1/promotion_codes")
    assert sum(stripe_emulator.account.rate_limits.rejected().values()) > 0
    assert client.retries > 0
    assert set(ids) == set(stripe_emulator.account.state("promotion_code"))
    assert max(ids.values()) == 1


def test_the_shared_limiter_keeps_every_thread_under_the_rate_limit(
    stripe_emulator: EmulatorServer,
) -> None:
    stripe_emulator.account.seed(promotion_codes=2000, coupons=20, products=20)
    stripe_emulator.account.rate_limits.configure(test=50, operation=50)
    # 20% under Stripe's limit: a busy machine may delay a request between limiter and socket.
    client = api(
        stripe_emulator,
        max_requests_per_second=40,
        max_requests_per_second_per_operation=40,
        max_workers=16,
    )
    ids = listed(client, "/v1/promotion_codes")
    assert len(ids) == len(stripe_emulator.account.state("promotion_code"))
    assert client.requests_made > 200  # five seconds' worth, 16 threads at once
    assert stripe_emulator.account.rate_limits.rejected() == {}


def test_a_cursor_deleted_while_listing_restarts_its_window_without_duplicates(
    stripe_emulator: EmulatorServer, client: stripe.StripeClient
) -> None:
    stripe_emulator.account.seed(coupons=600)
    before = set(stripe_emulator.account.state("coupon"))
    connector = api(stripe_emulator)
    listings = Lister(connector)
    first = listings.first_page("/v1/coupons")
    cursor = first[0].objects[-1]["id"]  # where the rest of the listing starts after
    client.v1.coupons.delete(cursor)  # Stripe now answers 404 for starting_after=cursor
    doomed = sorted(before - {cursor})[::3]
    for coupon_id in doomed:
        client.v1.coupons.delete(coupon_id)
    pages = listings.list_pages("/v1/coupons", first=first)
    ids = Counter(obj["id"] for page in pages for obj in page.objects)
    assert max(ids.values()) == 1
    listed_first = {obj["id"] for obj in first[0].objects}  # before anything was deleted
    assert set(ids) == (before - set(doomed)) | listed_first


def test_the_rate_defaults_to_the_keys_mode_and_can_be_set() -> None:
    base = "http://127.0.0.1:12111"
    assert StripeApi("sk_test_someKey0123456789", base).rate == 25  # Stripe's test-mode limit
    assert StripeApi("rk_live_someKey0123456789", base).rate == 100
    assert StripeApi("sk_live_someKey0123456789", base, max_requests_per_second=60).rate == 60
