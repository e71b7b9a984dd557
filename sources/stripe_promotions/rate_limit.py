"""Stripe's two rate limits at once: the account's, and each named operation's.

Stripe counts requests per second per account (100 in live mode, 25 in a sandbox) and, on top
of that, per named operation (method + path template, 25 by default): `GET /v1/promotion_codes`
and `GET /v1/promotion_codes/{id}` are two operations. A request may leave only when both
allow it, so one budget hands out departure slots for every thread of a run: each operation's
slots are `1 / its rate` apart, and the account's slots, taken by all operations together,
`1 / the account rate` apart. A listing of one operation never holds up another's requests.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import StripeSourceError

# The window Stripe counts in, plus a margin for the time a request takes from here to Stripe.
WINDOW_SECONDS = 1.01
# A request that gets through after a 429 shrinks the spacing by this factor (about 22 requests
# undo one 429).
RECOVERY = 0.99
# A 429 widens the spacing by this factor, once a second at most (one burst is one signal),
# up to SLOWEST times the documented spacing.
SLOWDOWN = 1.25
SLOWEST = 10.0


class Limit:
    """At most `rate` requests in any second: evenly spaced slots, and the real departures.

    A thread may leave its slot late (waiting for the GIL while others work), bunching up with
    the requests after it; so the limit also remembers when its last `rate` requests really
    left, and lets one go only once the oldest of them is more than WINDOW_SECONDS old.
    """

    def __init__(self, rate: float, name: str) -> None:
        self.rate = checked_rate(rate, name)
        self.interval = self._fastest = 1.0 / rate
        self.sent: deque[float] = deque(maxlen=max(1, math.floor(rate)))
        self._slowed_at = -math.inf

    def window_wait(self, now: float) -> float:
        """Seconds until one more departure keeps any window within the rate (0: now)."""
        sent = self.sent
        return sent[0] + WINDOW_SECONDS - now if len(sent) == sent.maxlen else 0.0

    def succeeded(self) -> None:
        """A request got through: back towards the full rate."""
        if self.interval > self._fastest:
            self.interval = max(self._fastest, self.interval * RECOVERY)

    def rate_limited(self, now: float) -> None:
        """A 429: widen the spacing."""
        if now - self._slowed_at >= 1.0:
            self._slowed_at = now
            self.interval = min(self._fastest * SLOWEST, self.interval * SLOWDOWN)


class OperationLimit(Limit):
    """One operation's limit: its slots come one after another."""

    def __init__(self, rate: float, name: str) -> None:
        super().__init__(rate, name)
        self.next = 0.0


class AccountLimit(Limit):
    """The account's limit: slots taken by many operations, not in time order."""

    def __init__(self, rate: float, name: str) -> None:
        super().__init__(rate, name)
        self._taken: list[float] = []  # slot times handed out and not yet long past

    def take(self, earliest: float, now: float) -> float:
        """The first free slot at or after `earliest`, taken."""
        taken = self._taken
        gap = self.interval
        del taken[: bisect.bisect_left(taken, now - gap)]
        slot = earliest
        at = bisect.bisect_right(taken, slot - gap)
        while at < len(taken) and taken[at] < slot + gap:
            slot = taken[at] + gap
            at += 1
        taken.insert(at, slot)
        return slot


class RateBudget:
    """Departure slots for every request of a run, within the account's and each operation's
    limit; shared by all threads. After a 429, the operation's and the account's spacing widen
    (either limit may have been hit, or another client on the same key); each request that
    gets through narrows them again, so a shared key settles at the rate it can have."""

    def __init__(self, account_rate: float, operation_rate: float) -> None:
        self.account = AccountLimit(account_rate, "max_requests_per_second")
        self.operation_rate = checked_rate(operation_rate, OPERATION_SETTING)
        self._operations: dict[str, OperationLimit] = {}
        self._listings: Counter[str] = Counter()  # listings under way, by operation
        self._lock = threading.Lock()

    @property
    def per_operation(self) -> float:
        """Requests per second any one operation may have: its own limit, within the account's."""
        return min(self.operation_rate, self.account.rate)

    @contextmanager
    def listing(self, operation: str) -> Iterator[None]:
        """Count a listing of `operation` under way: listings share the limits."""
        with self._lock:
            self._listings[operation] += 1
        try:
            yield
        finally:
            with self._lock:
                self._listings[operation] -= 1

    def listing_share(self, operation: str, capacity: float) -> float:
        """Requests per second one listing of `operation` may aim for: its share of the
        operation's limit and of `capacity` (the account's rate, or what the CPU serves)
        among the listings under way."""
        with self._lock:
            same = max(1, self._listings[operation])
            every = max(1, sum(self._listings.values()))
        return min(self.per_operation / same, capacity / every)

    def acquire(self, operation: str) -> None:
        """Block until a request of `operation` (e.g. `GET /v1/coupons`) may leave."""
        with self._lock:
            limit = self._limit(operation)
            now = time.monotonic()
            slot = self.account.take(max(now, limit.next), now)
            limit.next = slot + limit.interval
        if slot > now:
            time.sleep(slot - now)
        while True:
            with self._lock:
                now = time.monotonic()
                wait = max(self.account.window_wait(now), limit.window_wait(now))
                if wait <= 0:
                    self.account.sent.append(now)
                    limit.sent.append(now)
                    return
            time.sleep(wait)

    def succeeded(self, operation: str) -> None:
        """A request of `operation` got through."""
        with self._lock:
            self.account.succeeded()
            self._limit(operation).succeeded()

    def rate_limited(self, operation: str) -> None:
        """Stripe answered 429 to a request of `operation`: slow it and the account down."""
        with self._lock:
            now = time.monotonic()
            limit = self._limit(operation)
            self.account.rate_limited(now)
            limit.rate_limited(now)
            limit.next = max(limit.next, now + limit.interval)

    def _limit(self, operation: str) -> OperationLimit:
        limit = self._operations.get(operation)
        if limit is None:
            limit = OperationLimit(self.operation_rate, OPERATION_SETTING)
            self._operations[operation] = limit
        return limit


OPERATION_SETTING = "max_requests_per_second_per_operation"


def checked_rate(rate: float, name: str) -> float:
    """A rate setting, or an error naming the setting."""
    if not isinstance(rate, int | float) or rate <= 0 or not math.isfinite(rate):
        raise StripeSourceError(f"{name} must be a positive number of requests/s, not {rate!r}")
    return float(rate)
