"""A realistic, deterministic account: objects spread over a year, in every state.

Records are built directly (no request validation) so a million promotion codes seed in
seconds; events are recorded only for what happened within Stripe's 30-day retention.
"""

from __future__ import annotations

import bisect
import itertools
import random
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .collection import Collection
from .coupons import CouponRecord
from .events import RETENTION_SECONDS
from .products import ProductRecord
from .promotion_codes import PromotionCodeRecord

if TYPE_CHECKING:
    from .account import AccountState

DAY = 24 * 3600
PRESETS: dict[str, dict[str, int]] = {
    "demo": {"coupons": 24, "products": 16, "promotion_codes": 60},
}
ADJECTIVES = ["Classic", "Premium", "Organic", "Vintage", "Smart", "Eco", "Deluxe", "Mini", "Pro"]
NOUNS = ["T-shirt", "Hoodie", "Mug", "Backpack", "Notebook", "Lamp", "Course", "Plan", "Coaching"]
WORDS = ["SUMMER", "WELCOME", "FALL", "VIP", "FRIENDS", "SPRING", "BLACKFRIDAY", "LOYAL", "LAUNCH"]
PERCENTS = [5, 10, 12.5, 15, 20, 25, 25.5, 30, 33.3, 40, 50, 75, 100]
CURRENCIES = ["usd", "usd", "usd", "eur", "eur", "gbp", "jpy", "jpy", "cad"]
META_KEYS = ["campaign", "channel", "owner", "region", "sku", "category", "tier", "order_id"]
# Minor units per major unit differ: Stripe's zero- and three-decimal currencies (the same
# lists as amount_off_major in transforms/stripe_promotions_transforms/coupons.sql); every
# other currency has two decimals.
ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv"}
    | {"xaf", "xof", "xpf"}
)
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})


def decimals(currency: str) -> int:
    """How many decimals the currency's major unit has: `amount_off` counts minor units."""
    code = currency.lower()
    return 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2


def major_units(amount: int, currency: str) -> str:
    """An amount in minor units as people write it: `9 EUR`, `12.50 USD`, `4,100 JPY`."""
    places = decimals(currency)
    major = Decimal(amount).scaleb(-places)
    text = f"{major:,.0f}" if major == major.to_integral_value() else f"{major:,.{places}f}"
    return f"{text} {currency.upper()}"


def _times(rng: random.Random, count: int, start: float, end: float) -> list[int]:
    return sorted(int(rng.uniform(start, end)) for _ in range(count))


def _metadata(rng: random.Random, share: float) -> dict[str, str]:
    if rng.random() >= share:
        return {}
    keys = rng.sample(META_KEYS, rng.randint(1, 3))
    return {key: f"{key}-{rng.randint(1, 999)}" for key in keys}


def seed_account(
    account: AccountState,
    *,
    preset: str | None = None,
    coupons: int | None = None,
    products: int | None = None,
    promotion_codes: int | None = None,
    seed: int = 1,
    span_days: int = 365,
) -> dict[str, int]:
    """Add objects to `account`; `promotion_codes=N` alone implies N/10 coupons and products."""
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown seed preset {preset!r}; known: {', '.join(PRESETS)}")
        counts = PRESETS[preset]
        coupons, products, promotion_codes = (
            counts["coupons"],
            counts["products"],
            counts["promotion_codes"],
        )
    n_codes = promotion_codes or 0
    n_coupons = coupons if coupons is not None else max(1, n_codes // 10)
    n_products = products if products is not None else max(1, n_codes // 10)
    rng = random.Random(seed)
    now = account.clock.now()
    start, end = now - span_days * DAY, now - 3600
    recent = now - RETENTION_SECONDS + 3600
    version = account.api_version

    product_records = _seed_products(account, rng, _times(rng, n_products, start, end), recent)
    coupon_records = _seed_coupons(
        account, rng, _times(rng, n_coupons, start, end), product_records, recent
    )
    if coupon_records:
        _seed_promotion_codes(
            account, rng, _times(rng, n_codes, start, end), coupon_records, recent
        )
    for record in coupon_records:
        if record.deleted:
            continue
        direct = rng.choice([0, 0, 0, rng.randint(1, 20)])
        record.times_redeemed += direct
        if record.max_redemptions is not None:
            record.times_redeemed = min(record.times_redeemed, record.max_redemptions)
    _record_recent_events(account, recent, version)
    return {
        "coupons": len(account.coupons.index),
        "products": len(account.products.index),
        "promotion_codes": len(account.promotion_codes.index),
        "events": len(account.events.index),
    }


def _seed_products(
    account: AccountState, rng: random.Random, times: list[int], recent: float
) -> list[ProductRecord]:
    records = []
    for number, created in enumerate(times):
        good = rng.random() < 0.6
        record = ProductRecord(
            id=account.new_id("prod_", 14),
            created=created,
            seq=account.next_seq(),
            name=f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {number}",
            updated=created,
            type="good" if good else "service",
            description=rng.choice([None, "Made with care.", "Our best seller.", "Limited run."]),
            images=[f"https://example.com/img/{number}.png"] if rng.random() < 0.3 else [],
            marketing_features=[{"name": "Free shipping"}] if rng.random() < 0.3 else [],
            metadata=_metadata(rng, 0.7),
            package_dimensions={"height": 2.5, "length": 10.0, "weight": 12.0, "width": 8.0}
            if good and rng.random() < 0.5
            else None,
            shippable=True if good else None,
            unit_label=None if good else rng.choice([None, "seat"]),
            url=f"https://example.com/p/{number}" if rng.random() < 0.4 else None,
            default_price=account.new_id("price_", 24) if rng.random() < 0.5 else None,
            livemode=account.livemode,
        )
        if rng.random() < 0.1:
            record.active = False
            record.updated = int(rng.uniform(created, account.clock.now()))
        records.append(record)
        if record.default_price is None and rng.random() < 0.05:
            _seed_deletion(account, record, rng, recent)
        else:
            account.products.insert(record)
    return records


def _seed_coupons(
    account: AccountState,
    rng: random.Random,
    times: list[int],
    products: list[ProductRecord],
    recent: float,
) -> list[CouponRecord]:
    product_times = [p.created for p in products]
    records = []
    for created in times:
        record = CouponRecord(
            id=account.new_id("", 8, upper=True),
            created=created,
            seq=account.next_seq(),
            duration=rng.choice(["once", "once", "repeating", "forever"]),
            metadata=_metadata(rng, 0.6),
            livemode=account.livemode,
        )
        if rng.random() < 0.55:
            record.percent_off = float(rng.choice(PERCENTS))
            record.name = f"{record.percent_off:g}% off"
        else:
            record.currency = rng.choice(CURRENCIES)
            record.amount_off = (
                rng.randrange(500, 5000, 100)
                if record.currency == "jpy"
                else rng.randrange(100, 5000, 50)
            )
            record.name = f"{major_units(record.amount_off, record.currency)} off"
            if rng.random() < 0.2:
                record.currency_options = {
                    c: {"amount_off": record.amount_off}
                    for c in ("eur", "gbp")
                    if c != record.currency
                }
        if record.duration == "repeating":
            record.duration_in_months = rng.randint(1, 12)
        if rng.random() < 0.3:
            record.max_redemptions = rng.randint(10, 1000)
        if rng.random() < 0.35:
            record.redeem_by = created + rng.randint(7, 400) * DAY
        known = bisect.bisect_right(product_times, created)
        if known and rng.random() < 0.15:
            record.applies_to = [
                products[rng.randrange(known)].id for _ in range(rng.randint(1, 3))
            ]
        records.append(record)
        if rng.random() < 0.05:
            _seed_deletion(account, record, rng, recent)
        else:
            account.coupons.insert(record)
    return records


def _seed_promotion_codes(
    account: AccountState,
    rng: random.Random,
    times: list[int],
    coupons: list[CouponRecord],
    recent: float,
) -> None:
    coupon_times = [c.created for c in coupons]
    for number, created in enumerate(times):
        known = bisect.bisect_right(coupon_times, created)
        coupon = _redeemable_coupon(coupons, rng.randrange(known) if known else 0, created)
        record = PromotionCodeRecord(
            id=account.new_id("promo_", 24),
            created=max(created, coupon.created),
            seq=account.next_seq(),
            code=f"{rng.choice(WORDS)}{number}",
            coupon=coupon,
            customer=account.new_id("cus_", 14) if rng.random() < 0.15 else None,
            metadata=_metadata(rng, 0.5),
            livemode=account.livemode,
        )
        if rng.random() < 0.25:
            record.expires_at = record.created + rng.randint(1, 200) * DAY
            if coupon.redeem_by is not None:
                record.expires_at = min(record.expires_at, coupon.redeem_by)
        if rng.random() < 0.3:
            record.max_redemptions = rng.randint(1, 500)
        if rng.random() < 0.2:
            record.first_time_transaction = True
        if rng.random() < 0.15:
            record.minimum_amount = rng.randrange(1000, 10000, 500)
            record.minimum_amount_currency = coupon.currency or "usd"
        if rng.random() < 0.4:
            cap = record.max_redemptions or 50
            record.times_redeemed = rng.randint(1, min(cap, 50))
            if coupon.max_redemptions is not None:  # the coupon counts its codes' redemptions
                room = max(0, coupon.max_redemptions - coupon.times_redeemed)
                record.times_redeemed = min(record.times_redeemed, room)
            coupon.times_redeemed += record.times_redeemed
        if rng.random() < 0.12:
            record.active = False
        account.promotion_codes.insert(record)


def _redeemable_coupon(coupons: list[CouponRecord], index: int, at: int) -> CouponRecord:
    """The coupon at `index`, else the nearest one not past `redeem_by` at `at`.

    Stripe refuses a promotion code for a coupon that is no longer valid.
    """
    for position in itertools.chain(range(index, -1, -1), range(index + 1, len(coupons))):
        candidate = coupons[position]
        if candidate.redeem_by is None or candidate.redeem_by > at:
            return candidate
    return coupons[index]


def _seed_deletion(
    account: AccountState, record: CouponRecord | ProductRecord, rng: random.Random, recent: float
) -> None:
    """A seeded object that was deleted: kept for references, announced if recent."""
    deleted_at = int(rng.uniform(record.created, account.clock.now() - 60))
    record.deleted = True
    version = account.api_version_at(deleted_at)
    if isinstance(record, CouponRecord):
        account.coupons.records[record.id] = record
        rendered, kind = account.coupons.render(record, version), "coupon"
    else:
        account.products.records[record.id] = record
        rendered, kind = account.products.render(record, version), "product"
    if deleted_at >= recent:
        account.events.emit(f"{kind}.deleted", rendered, None, at=deleted_at)


def _record_recent_events(account: AccountState, since: float, version: str) -> None:
    """`*.created` events for objects created within retention, in creation order."""
    recent: list[tuple[int, int, str, dict[str, Any]]] = []
    targets: tuple[Collection[Any], ...] = (
        account.products,
        account.coupons,
        account.promotion_codes,
    )
    for target in targets:
        for record in target.records.values():
            if record.created >= since and not getattr(record, "deleted", False):
                rendered = target.render(record, version)
                recent.append((record.created, record.seq, target.kind, rendered))
    recent.sort(key=lambda item: (item[0], item[1]))
    for created, _, kind, rendered in recent:
        account.events.emit(f"{kind}.created", rendered, None, at=created)
