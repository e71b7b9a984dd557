"""Listings: every object of a `created` range as pages, fetched in parallel windows.

The newest page comes first; if more follow, the rest of the range is cut into windows
fetched in parallel, and whenever a worker is idle the window expected to take longest is cut
again, so the listing keeps its operation's rate limit (or the CPU) busy to the end.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from .client import Page, StripeApi
from .settings import STRIPE_EPOCH


@dataclass
class Window:
    """Part of a listing: objects with `low <= created <= high`, older than `after`."""

    low: int | None
    high: int | None
    after: str | None = None
    seen_at_high: set[str] = field(default_factory=set)
    # Objects per second of `created` where this window was last read (0: not known yet).
    density: float = 0.0
    # `low` is the listing's own bound: where its objects really stop is not known yet.
    open_bottom: bool = False
    # `density` was read from this window's own page, not inherited from the window it was
    # cut from: only then is the window cut again.
    measured: bool = False

    def pages(self, page_size: int) -> float:
        """How many pages are expected to remain, if objects keep the density last seen."""
        if self.low is None or self.high is None:
            return 0.0
        return self.density * (self.high - self.low + 1) / page_size


class Lister:
    """The listings of one run, over its client: they share its rate limits and its CPU."""

    def __init__(self, api: StripeApi) -> None:
        self.api = api
        self._lock = threading.Lock()
        # Process CPU seconds per request (moving average; everything the run does per page),
        # and where it was last measured: (process CPU s, requests made).
        self.cpu_per_request = 0.0
        self._cpu_mark: tuple[float, int] | None = None

    def list_pages(
        self,
        path: str,
        *,
        low: int | None = None,
        high: int | None = None,
        params: Mapping[str, Any] | None = None,
        parallel: bool = True,
        first: tuple[Page, Window | None] | None = None,
    ) -> Iterator[Page]:
        """Every object with `low <= created <= high`, as pages in completion order.

        The newest page comes first (or `first`, fetched earlier with `first_page`); if more
        follow, the rest of the range is cut into windows fetched in parallel, and whenever a
        worker is idle the window expected to take longest is cut again (see `_share`).
        """
        base = dict(params or {})
        workers = self.api.max_workers if parallel else 1
        if first is None:
            first = self.first_page(path, low=low, high=high, params=base)
        page, rest = first
        yield page
        if rest is None:
            return
        operation = f"GET {path}"
        listing = self.api.budget.listing(operation)
        with listing, ThreadPoolExecutor(workers, thread_name_prefix="stripe") as pool:
            running: dict[Future[tuple[Page, Window | None]], tuple[Window, int | None]] = {}
            windows = [rest]
            while windows or running:
                fetched = [window for window, _ in running.values()]
                for window in self._share(windows, fetched, workers, operation):
                    future = pool.submit(self._fetch, path, base, window)
                    running[future] = (window, window.low)
                windows = []
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    window, asked_low = running.pop(future)
                    page, remaining = _clip(*future.result(), window, asked_low)
                    if remaining is not None:
                        windows.append(remaining)
                    yield page

    def first_page(
        self,
        path: str,
        *,
        low: int | None = None,
        high: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> tuple[Page, Window | None]:
        """The newest page of a listing, and the window that remains after it."""
        window = Window(max(low or 0, STRIPE_EPOCH), high, open_bottom=True)
        return self._fetch(path, dict(params or {}), window)

    def _fetch(
        self, path: str, base: Mapping[str, Any], window: Window
    ) -> tuple[Page, Window | None]:
        """One page of a window, and what remains of the window after it."""
        low, high, after, seen = window.low, window.high, window.after, window.seen_at_high
        created = {k: v for k, v in (("gte", low), ("lte", high)) if v is not None}
        params: dict[str, Any] = {**base, "limit": self.api.page_size}
        if created:
            params["created"] = created
        if after:
            params["starting_after"] = after
        found = self.api.get(path, params, what=f"{path} (created {created or 'any'})")
        if found is None:
            # The cursor object was deleted while we paged: restart the window at its second,
            # skipping the objects of that second we already have.
            return Page([], True, self.api.server_time or 0), Window(
                low, high, None, seen, window.density, window.open_bottom
            )
        body, server_time = found
        data = body["data"]
        objects = [o for o in data if o["id"] not in seen] if seen else data
        page = Page(objects, bool(body["has_more"]), server_time)
        if not body["has_more"] or not data:
            return page, None
        last = data[-1]["created"]
        same_second = {o["id"] for o in data if o["created"] == last}
        if high is not None and last == high:
            same_second |= seen
        # Objects per second where this page was read: what the rest is expected to hold.
        density = len(data) / max(1, data[0]["created"] - last)
        rest = Window(low, last, data[-1]["id"], same_second, density, window.open_bottom, True)
        return page, rest

    def _share(
        self, windows: list[Window], running: list[Window], workers: int, operation: str
    ) -> list[Window]:
        """The windows to fetch next: `windows`, plus parts cut off big ones for idle workers.

        Enough windows keep the rate limit busy: this listing's rate (its share of its
        operation's limit and of the account's, among the listings under way on the same
        budget: a platform's accounts share one) times the latency,
        with a margin; or, when this process's CPU cannot keep up with the rate limit, the
        rate the CPU can serve (see `_capacity`). Every window ends in a part-filled page, so
        a cut costs a request: beyond that count, a
        window is only cut when it would hold up the end of the listing, i.e. it holds more
        than twice its share of the pages expected. A window whose bottom is the listing's own
        bound is cut in parts growing 4x towards the bottom, since its objects may stop
        anywhere; any other in equal parts. Only windows whose density was read from their own
        page are cut, and not below MIN_WINDOW_PAGES.
        """
        out = list(windows)
        spare = workers - len(running) - len(out)
        if spare <= 0:
            return out
        size = self.api.page_size
        capacity = self._capacity()
        share = self.api.budget.listing_share(operation, capacity)
        # When the CPU is the bottleneck, answers wait for it and round trips look long: the
        # quickest recent one is closer to what the network takes.
        latency = (
            self.api.latency
            if capacity >= self.api.rate
            else min(self.api.recent_round_trips, default=0.0)
        )
        busy = max(1, min(workers, math.ceil(share * latency * 1.25) + 2))
        every = [*out, *running]
        expected = sum(w.pages(size) for w in every if not w.open_bottom)
        target = max(MIN_WINDOW_PAGES, expected / busy)
        candidates = [
            w
            for w in every
            if w.low is not None
            and w.high is not None
            and w.high > w.low
            and w.measured
            and (w.open_bottom or w.pages(size) >= 2 * MIN_WINDOW_PAGES)
        ]
        while spare > 0 and candidates:
            if len(every) < busy:
                biggest = max(candidates, key=lambda w: (w.open_bottom, w.pages(size)))
                parts = busy - len(every) + 1
            else:
                biggest = max(candidates, key=lambda w: (not w.open_bottom, w.pages(size)))
                if biggest.open_bottom or biggest.pages(size) <= 2 * target:
                    break
                parts = math.ceil(biggest.pages(size) / target)
            candidates.remove(biggest)
            new = _cut(biggest, min(parts, spare + 1), target * size / biggest.density)
            out.extend(new)
            every.extend(new)
            spare -= len(new)
        return out

    def _capacity(self) -> float:
        """Requests per second worth aiming for: the rate limit, or what the CPU can serve.

        The work per page (parsing, building Arrow, dlt) holds the GIL, so it runs on one core
        whatever the machine: at `cpu_per_request` seconds a page, more than
        1 / cpu_per_request requests per second only queue up. With no latency and no rate
        limit, 32 threads per listing used 6% more CPU than 4 (benchmarks/RESULTS.md).
        """
        with self._lock:
            cpu, made = time.process_time(), self.api.requests_made
            mark = self._cpu_mark
            if mark is None or made < mark[1]:
                self._cpu_mark = (cpu, made)
            elif made - mark[1] >= CPU_SAMPLE_REQUESTS:
                per = (cpu - mark[0]) / (made - mark[1])
                self.cpu_per_request = (
                    0.7 * self.cpu_per_request + 0.3 * per if self.cpu_per_request else per
                )
                self._cpu_mark = (cpu, made)
            per_request = self.cpu_per_request
        return min(self.api.rate, 1.0 / per_request) if per_request > 0 else self.api.rate


# Requests between two measurements of the CPU a request costs.
CPU_SAMPLE_REQUESTS = 50
# Windows are not cut into parts expected to hold fewer pages than this.
MIN_WINDOW_PAGES = 2.0


def _cut(window: Window, parts: int, width: float) -> list[Window]:
    """Cut a window into up to `parts` parts; return the new ones (the window keeps the top).

    The window keeps its top part and its cursor, which sits in its top second, so a window
    being fetched can be cut too. An open-bottom window is cut from the top in parts 1, 4,
    16... times `width` seconds, the last part reaching down to its bottom; any other in
    equal parts.
    """
    assert window.low is not None and window.high is not None
    span = window.high - window.low + 1
    if window.open_bottom:
        cuts: list[int] = []
        step, edge = max(1.0, width), float(window.high + 1)
        while len(cuts) < parts - 1 and edge - step > window.low:
            edge -= step
            cuts.append(round(edge))
            step *= 4
    else:
        parts = min(parts, span)
        cuts = [window.high + 1 - round(span * i / parts) for i in range(1, parts)]
    inside = {cut for cut in cuts if window.low < cut <= window.high}
    bounds = [*sorted(inside, reverse=True), window.low]
    if len(bounds) < 2:
        return []
    new = [
        Window(bounds[i + 1], bounds[i] - 1, density=window.density) for i in range(len(bounds) - 1)
    ]
    new[-1].open_bottom = window.open_bottom
    window.low, window.open_bottom = bounds[0], False
    return new


def _clip(
    page: Page, rest: Window | None, window: Window, asked_low: int | None
) -> tuple[Page, Window | None]:
    """A page of a window whose bottom was cut off while it was fetched: drop what is below."""
    low = window.low
    if low is None or asked_low is None or low <= asked_low:
        if rest is not None:
            rest.open_bottom = window.open_bottom
        return page, rest
    page.objects = [o for o in page.objects if o["created"] >= low]
    if rest is None or rest.high is None or rest.high < low:
        return page, None
    rest.low, rest.open_bottom = low, window.open_bottom
    return page, rest
