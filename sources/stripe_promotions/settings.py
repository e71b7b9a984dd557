"""Constants and endpoint tables: what the source reads from Stripe, and how."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# The `stripe` SDK 16.1.0 pins this version; rows are canonical whichever version rendered them.
API_VERSION: Final = "2026-10-28.endive"
DEFAULT_API_BASE: Final = "https://api.stripe.com"
PAGE_SIZE: Final = 100
# No Stripe object is older than this (2011-01-01): the lower bound when splitting listings.
STRIPE_EPOCH: Final = 1293840000
# Rows per Arrow table handed to dlt: dlt spends ~8 ms on each table whatever its size, and
# pages wait as Arrow (about 200 bytes a row), not as dicts: 20,000 took 0.1 s less per
# backfill of 120,000 objects than 5,000, at the same peak memory (benchmarks/RESULTS.md).
ROWS_PER_TABLE: Final = 20_000

# Stripe keeps events for 30 days; past (30 days - margin) the run lists everything instead.
EVENT_RETENTION_SECONDS: Final = 30 * 24 * 3600
RETENTION_MARGIN_SECONDS: Final = 24 * 3600
# Event listing is eventually consistent: every run re-reads this window behind its cursor.
EVENT_LAG_SECONDS: Final = 300

# Stripe's documented rate limits: requests per second for the whole account, by key mode, and
# for each named operation (method + path template) on top of that.
RATE_LIMITS: Final = {"live": 100.0, "test": 25.0}
OPERATION_RATE_LIMIT: Final = 25.0
# Once Stripe has answered in a run, a failed request is tried up to MAX_ATTEMPTS times with
# backoff doubling from 0.5 s to MAX_BACKOFF_SECONDS (about a minute in all).
MAX_ATTEMPTS: Final = 8
MAX_BACKOFF_SECONDS: Final = 20.0
REQUEST_TIMEOUT_SECONDS: Final = 60.0
CONNECT_TIMEOUT_SECONDS: Final = 10.0
# Before Stripe has answered anything in a run, no connection is likelier a wrong URL or a
# firewall than a blip: the run gives up after this many attempts, each connecting for at most
# FIRST_CONTACT_TIMEOUT seconds (the run reports within 10 s).
FIRST_CONTACT_ATTEMPTS: Final = 3
FIRST_CONTACT_TIMEOUT: Final = 2.5


@dataclass(frozen=True)
class ObjectType:
    """One Stripe object type the source syncs."""

    name: str  # coupon
    table: str  # coupons (raw table and current-state table)
    path: str  # /v1/coupons
    expand: tuple[str, ...]  # list expansions the canonical row needs
    deletable: bool  # Stripe can delete it (promotion codes are only deactivated)

    @property
    def event_types(self) -> tuple[str, ...]:
        """Stripe's exact event names for this type (`types[]` takes no wildcards)."""
        actions = ("created", "updated", "deleted") if self.deletable else ("created", "updated")
        return tuple(f"{self.name}.{action}" for action in actions)


OBJECT_TYPES: Final = {
    t.name: t
    for t in (
        ObjectType("coupon", "coupons", "/v1/coupons", ("applies_to", "currency_options"), True),
        ObjectType("product", "products", "/v1/products", (), True),
        ObjectType("promotion_code", "promotion_codes", "/v1/promotion_codes", (), False),
    )
}
EVENTS_PATH: Final = "/v1/events"
# The key's own account (or, with Stripe-Account, that connected account), and a platform's
# connected accounts (paged, with a `created` filter, like every list).
ACCOUNT_PATH: Final = "/v1/account"
ACCOUNTS_PATH: Final = "/v1/accounts"
# Accounts a resource reads at once (Connect): each account's listings are further parallel.
ACCOUNTS_AT_ONCE: Final = 16
# Stripe's `types[]` filter takes at most this many exact event names per request.
MAX_EVENT_TYPES: Final = 20
