"""The seed: deterministic, realistic and consistent, and large seeds list correctly."""

from __future__ import annotations

import time
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
import stripe

from stripe_emulator import Account
from stripe_emulator.seed import major_units
from stripe_emulator.server import EmulatorServer
from tests.emulator.emulator_support import OLD_VERSION, ids, plain

DAY = 24 * 3600
KINDS = ("coupon", "product", "promotion_code", "event")


def frozen_account(at: float) -> Account:
    account = Account()
    account.clock.freeze(at)
    return account


@pytest.mark.parametrize("counts", [{"preset": "demo"}, {"promotion_codes": 400}])
def test_seeding_is_deterministic(counts: dict[str, Any]) -> None:
    at = time.time() + 60
    first, second = frozen_account(at), frozen_account(at)
    assert first.seed(**counts) == second.seed(**counts)
    for kind in KINDS:
        assert first.state(kind) == second.state(kind), kind
        assert first.state(kind, OLD_VERSION) == second.state(kind, OLD_VERSION), kind
    for kind in ("coupon", "product"):
        assert first.deleted_ids(kind) == second.deleted_ids(kind)
    assert list(first.state("promotion_code")) != [], "seeded nothing"


def test_demo_seed_is_realistic(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    account = stripe_emulator.account
    account.seed(preset="demo")
    now = account.clock.now()

    def everything(kind: str) -> list[dict[str, Any]]:
        page = getattr(client.v1, kind).list(params={"limit": 100})
        return [plain(item) for item in page.auto_paging_iter()]

    coupons, products, codes = (
        everything("coupons"),
        everything("products"),
        everything("promotion_codes"),
    )
    assert (len(coupons), len(products), len(codes)) == (
        len(account.state("coupon")),
        len(account.state("product")),
        60,
    )
    currencies = {c["currency"] for c in coupons if c["amount_off"] is not None}
    assert "jpy" in currencies and len(currencies) >= 3
    assert any(c["percent_off"] is not None for c in coupons)
    assert any(c["amount_off"] is not None for c in coupons)
    assert {c["duration"] for c in coupons} == {"once", "repeating", "forever"}
    assert any(not c["valid"] for c in coupons) and any(c["valid"] for c in coupons)
    assert any(c["metadata"] for c in coupons)

    assert any(not p["active"] for p in products) and any(p["active"] for p in products)
    assert {p["type"] for p in products} == {"good", "service"}

    assert any(not p["active"] for p in codes) and any(p["active"] for p in codes)
    assert any(p["times_redeemed"] > 0 for p in codes)
    assert any(p["expires_at"] is not None and p["expires_at"] < now for p in codes)
    assert any(p["customer"] is not None for p in codes)

    # Deleted objects are absent from lists and cannot be retrieved.
    deleted = account.deleted_ids("coupon") | account.deleted_ids("product")
    assert deleted
    listed = {c["id"] for c in coupons} | {p["id"] for p in products}
    assert not deleted & listed
    for object_id in deleted:
        service: Any = client.v1.products if object_id.startswith("prod_") else client.v1.coupons
        with pytest.raises(stripe.InvalidRequestError) as raised:
            service.retrieve(object_id)
        assert raised.value.http_status == 404


def consistency_problems(account: Account) -> list[str]:
    """What Stripe would never show: violations of its rules in the seeded state."""
    now = account.clock.now()
    problems: list[str] = []
    coupons = account.state("coupon")
    codes = account.state("promotion_code", OLD_VERSION)  # embeds each code's coupon
    redeemed_through_codes: Counter[str] = Counter()
    active_codes: Counter[tuple[str | None, str]] = Counter()
    for code in codes.values():
        coupon = code["coupon"]
        redeemed_through_codes[coupon["id"]] += code["times_redeemed"]
        if code["created"] < coupon["created"]:
            problems.append(f"{code['id']} is older than its coupon")
        if coupon["redeem_by"] is not None and coupon["redeem_by"] <= code["created"]:
            problems.append(f"{code['id']} was created for an expired coupon")
        if code["expires_at"] is not None and code["expires_at"] <= code["created"]:
            problems.append(f"{code['id']} expires before it was created")
        if code["max_redemptions"] is not None and code["times_redeemed"] > code["max_redemptions"]:
            problems.append(f"{code['id']} is redeemed beyond max_redemptions")
        if code["active"] and not coupon["valid"]:
            problems.append(f"{code['id']} is active with an invalid coupon")
        if code["active"]:
            active_codes[(code["customer"], code["code"].lower())] += 1
    for coupon in coupons.values():
        limit = coupon["max_redemptions"]
        if limit is not None and coupon["times_redeemed"] > limit:
            problems.append(f"{coupon['id']} is redeemed beyond max_redemptions")
        if coupon["times_redeemed"] < redeemed_through_codes[coupon["id"]]:
            problems.append(f"{coupon['id']} counts fewer redemptions than its codes")
        if coupon["created"] > now:
            problems.append(f"{coupon['id']} is created in the future")
    for product in account.state("product").values():
        if not product["created"] <= product["updated"] <= now:
            problems.append(f"{product['id']} has updated outside [created, now]")
    problems += [f"duplicate active code {key}" for key, n in active_codes.items() if n > 1]
    for event in account.state("event").values():
        if event["created"] <= now - 30 * DAY:
            problems.append(f"{event['id']} is older than 30 days")
    return problems


@pytest.mark.parametrize("counts", [{"preset": "demo"}, {"promotion_codes": 3000}])
def test_seed_is_consistent(counts: dict[str, Any]) -> None:
    account = Account()
    account.seed(**counts)
    assert consistency_problems(account) == []


def test_seed_events_announce_recent_objects(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    account = stripe_emulator.account
    account.seed(promotion_codes=1000)
    now = account.clock.now()
    events = [plain(e) for e in client.v1.events.list(params={"limit": 100}).auto_paging_iter()]
    by_type = Counter(e["type"] for e in events)
    assert by_type["promotion_code.created"] > 0 and by_type["coupon.created"] > 0
    assert all(now - 30 * DAY < e["created"] <= now for e in events)
    created_ids = {e["data"]["object"]["id"] for e in events if e["type"].endswith(".created")}
    recent = {
        i
        for kind in ("coupon", "product", "promotion_code")
        for i, obj in account.state(kind).items()
        if obj["created"] > now - 30 * DAY + 3600
    }
    assert recent <= created_ids
    for event in events:
        if event["type"].endswith(".deleted"):
            assert event["data"]["object"]["id"] in (
                account.deleted_ids("coupon") | account.deleted_ids("product")
            )


def test_100k_promotion_codes_list_correctly_with_a_created_filter(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    account = stripe_emulator.account
    account.clock.freeze()
    counts = account.seed(promotion_codes=100_000)
    assert counts["promotion_codes"] == 100_000
    now = account.clock.timestamp()
    low, high = now - 200 * DAY, now - 198 * DAY
    records = account.promotion_codes.records.values()
    expected = [
        r.id
        for r in sorted(records, key=lambda r: (r.created, r.seq), reverse=True)
        if low <= r.created < high
    ]
    assert 300 < len(expected) < 1000

    listed = client.v1.promotion_codes.list(
        params={"created": {"gte": low, "lt": high}, "limit": 100}
    )
    assert listed.has_more is True
    assert ids(listed.auto_paging_iter()) == expected

    # The same window walked with raw pages, from the end backwards.
    response = client.raw_request(
        "get",
        "/v1/promotion_codes",
        created={"gte": low, "lt": high},
        limit=100,
        ending_before=expected[-1],
    )
    body: dict[str, Any] = response.data
    assert ids(body["data"]) == expected[-101:-1] and body["has_more"] is True

    newest = client.v1.promotion_codes.list(params={"created": {"gt": now - DAY}, "limit": 100})
    assert all(item.created > now - DAY for item in newest.data)
    exact = expected[len(expected) // 2]
    second = account.promotion_codes.records[exact].created
    same_second = client.v1.promotion_codes.list(params={"created": second, "limit": 100}).data
    assert exact in ids(same_second)
    assert all(item.created == second for item in same_second)


def test_amounts_are_written_in_major_units() -> None:
    assert major_units(900, "eur") == "9 EUR"
    assert major_units(1250, "usd") == "12.50 USD"
    assert major_units(123450, "usd") == "1,234.50 USD"
    assert major_units(4100, "jpy") == "4,100 JPY"
    assert major_units(12345, "kwd") == "12.345 KWD"
    assert major_units(12000, "KWD") == "12 KWD"


@pytest.mark.parametrize("counts", [{"preset": "demo"}, {"promotion_codes": 2000}])
def test_amount_coupons_are_named_in_major_units(counts: dict[str, Any]) -> None:
    account = Account()
    account.seed(**counts)
    amounts = [c for c in account.state("coupon").values() if c["amount_off"] is not None]
    assert {"jpy", "eur"} <= {c["currency"] for c in amounts}
    for coupon in amounts:
        # amount_off counts minor units: the seed's currencies are JPY (none) and 2-decimal ones.
        per_major = 1 if coupon["currency"] == "jpy" else 100
        number, currency, off = coupon["name"].split(" ")
        assert (currency, off) == (coupon["currency"].upper(), "off"), coupon["name"]
        assert Decimal(number.replace(",", "")) == Decimal(coupon["amount_off"]) / per_major, (
            coupon["name"],
            coupon["amount_off"],
        )
