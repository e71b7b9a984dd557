"""The emulated Stripe account: all state and rules, and the Python API tests drive."""

from __future__ import annotations

import datetime
import itertools
import random
import re
import string
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any, Literal, cast, get_args

from .auth import KeyRing
from .clock import Clock
from .collection import Collection, RequestContext
from .coupons import Coupons
from .errors import StripeError
from .events import Events
from .faults import Faults
from .products import Products
from .promotion_codes import PromotionCodes
from .rate_limits import RateLimits

DEFAULT_API_VERSION = "2026-10-28.endive"
VERSION_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")
OPERATIONS = ("list", "create", "retrieve", "update", "delete")
SameSecondOrder = Literal["insertion", "shuffled"]


def check_api_version(version: str) -> str:
    """Stripe's 400 for a `Stripe-Version` it does not know."""
    if not VERSION_FORMAT.match(version) or not _is_date(version[:10]):
        raise StripeError(400, f"Invalid Stripe API version: {version}", param="Stripe-Version")
    return version


def _is_date(text: str) -> bool:
    """Whether `text` (YYYY-MM-DD) is a real calendar day: no version is dated 2024-13-45."""
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


class Account:
    """One Stripe account. Every public method is safe to call from any thread."""

    def __init__(self, *, api_version: str = DEFAULT_API_VERSION, livemode: bool = False) -> None:
        self.lock = threading.RLock()
        self.clock = Clock()
        self.faults = Faults()
        self.rate_limits = RateLimits()
        self.keys = KeyRing()
        self.livemode = livemode
        self.requests: Counter[str] = Counter()
        self.same_second_order: SameSecondOrder = "insertion"
        self._default_version = check_api_version(api_version)
        self._init_state()

    def _init_state(self) -> None:
        self._rng = random.Random(0)
        self._seq = itertools.count()
        self._shuffle = random.Random(1)  # apart from ids, so ids stay the same either way
        self._versions: list[tuple[float, str]] = [(float("-inf"), self._default_version)]
        # Responses by Idempotency-Key (status, body), replayed for a repeated POST.
        self.idempotency: dict[str, tuple[int, dict[str, Any]]] = {}
        # Fields merged into every rendered object of a kind (schema drift): set_extra_fields.
        self.extra_fields: dict[str, dict[str, Any]] = {}
        self.coupons = Coupons(self)
        self.products = Products(self)
        self.promotion_codes = PromotionCodes(self)
        self.events = Events(self)
        self.collections: dict[str, Collection[Any]] = {
            c.path.rsplit("/", 1)[-1]: c
            for c in (self.coupons, self.products, self.promotion_codes, self.events)
        }

    # -- identity and versions -------------------------------------------------------------
    def next_seq(self) -> int:
        """The tie-break between objects created in the same second (Stripe documents none)."""
        if self.same_second_order == "shuffled":
            return self._shuffle.randrange(1 << 62)
        return next(self._seq)

    def set_same_second_order(self, order: str) -> None:
        """Order objects created from now on within one second by insertion, or stably shuffled."""
        if order not in get_args(SameSecondOrder):
            raise ValueError(f"same_second_order is insertion or shuffled, not {order!r}")
        with self.lock:
            self.same_second_order = cast(SameSecondOrder, order)

    def new_id(self, prefix: str, length: int, *, upper: bool = False) -> str:
        """A random id such as `promo_1Pgc79B7WZ01zgkW...`; deterministic after `reset`."""
        alphabet = (
            string.ascii_uppercase + string.digits
            if upper
            else string.ascii_letters + string.digits
        )
        return prefix + "".join(self._rng.choices(alphabet, k=length))

    @property
    def api_version(self) -> str:
        """The account's default API version now."""
        return self.api_version_at(self.clock.now())

    def api_version_at(self, moment: float) -> str:
        """The account's version at a moment: events keep the version of their creation."""
        version = self._versions[0][1]
        for since, candidate in self._versions:
            if since <= moment:
                version = candidate
        return version

    def set_api_version(self, version: str) -> None:
        """Upgrade (or pin) the account's API version from now on."""
        with self.lock:
            self._versions.append((self.clock.now(), check_api_version(version)))

    # -- the endpoint surface the HTTP layer calls --------------------------------------------
    def handle(
        self,
        collection: str,
        operation: str,
        object_id: str | None,
        params: Mapping[str, Any],
        ctx: RequestContext,
    ) -> dict[str, Any]:
        """Run one API operation, e.g. `("coupons", "update", "SUMMER", {...})`."""
        with self.lock:
            target = self.collections[collection]
            if operation == "list":
                return target.list(params, ctx)
            if operation == "create":
                return target.create(params, ctx)
            assert object_id is not None
            method = {"retrieve": target.retrieve, "update": target.update, "delete": target.delete}
            return method[operation](object_id, params, ctx)

    # -- controls for tests, the demo and benchmarks -----------------------------------------------
    def reset(self) -> None:
        """Forget all objects, events, key rules and clock offsets; faults off, limits default."""
        with self.lock:
            self.clock.reset()
            self.faults.reset()
            self.rate_limits.reset()
            self.keys.reset()
            self.same_second_order = "insertion"
            self.requests.clear()
            self._init_state()

    def redeem(self, promotion_code_id: str) -> dict[str, Any]:
        """A customer redeems a promotion code (bumps `times_redeemed` on it and its coupon)."""
        with self.lock:
            return self.promotion_codes.redeem(promotion_code_id)

    def advance_clock(self, seconds: float) -> float:
        """Move emulated time forward: events age out, coupons pass `redeem_by`."""
        with self.lock:
            return self.clock.advance(seconds)

    def set_event_delay(self, seconds: float) -> None:
        """New events become visible in lists only after this many emulated seconds."""
        with self.lock:
            self.events.visibility_delay = seconds

    def set_extra_fields(self, kind: str, fields: Mapping[str, Any]) -> None:
        """From now on render every `kind` object with these fields too, as when Stripe adds a
        field or changes a field's type (a name the object has is overridden); `{}` stops.

        Nothing else changes: no event is emitted, objects show the fields when next read.
        """
        with self.lock:
            self._by_kind(kind)
            if kind == "event":
                raise ValueError("extra fields are for coupons, products and promotion codes")
            if fields:
                self.extra_fields[kind] = dict(fields)
            else:
                self.extra_fields.pop(kind, None)

    def seed(self, preset: str | None = None, **counts: int) -> dict[str, int]:
        """Fill the account with a realistic, deterministic dataset (see `seed.py`)."""
        from .seed import seed_account

        with self.lock:
            return seed_account(self, preset=preset, **counts)

    def state(self, kind: str, api_version: str | None = None) -> dict[str, dict[str, Any]]:
        """Every live object of a kind (`coupon`, ...), by id, as Stripe would render it now."""
        with self.lock:
            target = self._by_kind(kind)
            version = api_version or self.api_version
            return {r.id: target.render(r, version) for r in target.live_records()}

    def deleted_ids(self, kind: str) -> set[str]:
        """Ids of deleted objects of a kind that have not come back."""
        with self.lock:
            target = self._by_kind(kind)
            return {i for i, r in target.records.items() if getattr(r, "deleted", False)} - set(
                r.id for r in target.live_records()
            )

    def _by_kind(self, kind: str) -> Collection[Any]:
        for target in self.collections.values():
            if target.kind == kind:
                return target
        raise ValueError(f"unknown object kind: {kind}")
