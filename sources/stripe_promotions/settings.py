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
# Ties within one second of Stripe's clock: observations rank by the local clock in ms when
# they arrived. Events rank above them all (a listing in that second may predate the change):
# by the run that read them (its start in ms), then by position in Stripe's newest-first list;
# objects that run reads again for fields events leave out rank just above its events.
EVENT_POSITIONS: Final = 1_000_000

# Stripe keeps events for 30 days; past (30 days - margin) the run lists everything instead.
EVENT_RETENTION_SECONDS: Final = 30 * 24 * 3600
RETENTION_MARGIN_SECONDS: Final = 24 * 3600
# Event listing is eventually consistent: every run re-reads this window behind its cursor.
EVENT_LAG_SECONDS: Final = 300

# Stripe's documented ceilings, per key mode.
RATE_LIMITS: Final = {"live": 100.0, "test": 25.0}
MAX_ATTEMPTS: Final = 8
MAX_BACKOFF_SECONDS: Final = 20.0
REQUEST_TIMEOUT_SECONDS: Final = 60.0


@dataclass(frozen=True)
class ObjectType:
    """One Stripe object type the source syncs."""

    name: str  # coupon
    table: str  # coupons (raw table and current-state table)
    path: str  # /v1/coupons
    expand: tuple[str, ...]  # list expansions the canonical row needs
    deletable: bool  # Stripe can delete it (promotion codes are only deactivated)

    @property
    def event_types(self) -> str:
        """The events filter for this type, e.g. `coupon.*`."""
        return f"{self.name}.*"


OBJECT_TYPES: Final = {
    t.name: t
    for t in (
        ObjectType("coupon", "coupons", "/v1/coupons", ("applies_to", "currency_options"), True),
        ObjectType("product", "products", "/v1/products", (), True),
        ObjectType("promotion_code", "promotion_codes", "/v1/promotion_codes", (), False),
    )
}
EVENTS_PATH: Final = "/v1/events"

# Raw tables besides the object tables.
EVENTS_TABLE: Final = "events"
DELETIONS_TABLE: Final = "deletions"
LISTINGS_TABLE: Final = "full_listings"
RUNS_TABLE: Final = "sync_runs"
