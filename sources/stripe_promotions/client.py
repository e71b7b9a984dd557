"""HTTP and paging mechanics: one Stripe client per run, rate-limited, retrying, parallel.

Pages come back as plain JSON (libcurl, see transport.py; parsed by orjson): no
`StripeObject`s, not even the SDK's `raw_request` (see benchmarks/RESULTS.md for the
measurement). Errors become `StripeSourceError`s whose messages say what to fix and never
contain the API key.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import orjson

from .errors import (
    StripeApiError,
    StripeAuthError,
    StripePermissionError,
    StripeSourceError,
    StripeUnreachableError,
)
from .rate_limit import RateBudget
from .settings import (
    API_VERSION,
    CONNECT_TIMEOUT_SECONDS,
    FIRST_CONTACT_ATTEMPTS,
    FIRST_CONTACT_TIMEOUT,
    MAX_ATTEMPTS,
    MAX_BACKOFF_SECONDS,
    OPERATION_RATE_LIMIT,
    PAGE_SIZE,
    RATE_LIMITS,
    REQUEST_TIMEOUT_SECONDS,
    STRIPE_EPOCH,
)
from .transport import Transport, TransportError

KEY_FORMAT = re.compile(r"^(sk|rk)_(test|live)_[0-9A-Za-z]+$")


def redact_key(key: str) -> str:
    """A key as safe to print: `sk_test_…wxyz`."""
    prefix = key[:8] if KEY_FORMAT.match(key) else ""
    return f"{prefix}…{key[-4:]}" if len(key) > 12 else "…"


def key_mode(key: str) -> str:
    """`live` or `test`, from the key's prefix."""
    return "live" if "_live_" in key[:8] else "test"


def check_key(key: str | None) -> str:
    """The key, or an error saying how to provide a usable one."""
    if not key:
        raise StripeAuthError(
            "No Stripe API key: set STRIPE_API_KEY, or api_key under [sources.stripe] in "
            ".dlt/secrets.toml (or SOURCES__STRIPE__API_KEY)."
        )
    key = key.strip()
    if not KEY_FORMAT.match(key):
        raise StripeAuthError(
            f"The Stripe API key {redact_key(key)} is malformed: expected a secret key "
            "(sk_live_…/sk_test_…) or a restricted key (rk_live_…/rk_test_…)."
        )
    return key


def check_api_base(url: str) -> str:
    """The base URL without a trailing slash, or an error naming what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StripeSourceError(
            f"The Stripe API base URL {url!r} is not an http(s) URL: use e.g. "
            "https://api.stripe.com or http://127.0.0.1:12111 (--api-base or "
            "SOURCES__STRIPE__API_BASE)."
        )
    if parts.path not in ("", "/") or parts.query:
        raise StripeSourceError(
            f"The Stripe API base URL {url!r} must not have a path or query: Stripe's paths "
            "(/v1/...) are added to it."
        )
    return url.rstrip("/")


@dataclass
class Page:
    """One list page (or retrieved object) and the server's clock when it was served."""

    objects: list[dict[str, Any]]
    has_more: bool
    server_time: int
    # When it arrived (local ns): orders reads within one second of Stripe's clock.
    received_ns: int = field(default_factory=time.time_ns)


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


class StripeApi:
    """A read-only Stripe client for one run: pinned version, rate limit, retries.

    Requests go through libcurl (transport.py); bodies are parsed by orjson into plain
    dicts and lists. The `stripe` SDK's `raw_request` costs 4-6x the CPU per page (it parses
    into `OrderedDict`s) and its `StripeObject`s ~50x (benchmarks/RESULTS.md, "Why not the SDK").
    Answers are read as the SDK reads them: the same statuses are retried, and errors carry
    Stripe's own message and request id.
    """

    def __init__(
        self,
        api_key: str,
        api_base: str,
        *,
        api_version: str = API_VERSION,
        max_requests_per_second: float | None = None,
        max_requests_per_second_per_operation: float = OPERATION_RATE_LIMIT,
        max_attempts: int = MAX_ATTEMPTS,
        max_workers: int | None = None,
        page_size: int = PAGE_SIZE,
        on_request: Callable[[], None] | None = None,
    ) -> None:
        self._key = check_key(api_key)
        self.api_version = api_version
        self.api_base = check_api_base(api_base)
        self.rate = max_requests_per_second or RATE_LIMITS[key_mode(self._key)]
        self.budget = RateBudget(self.rate, max_requests_per_second_per_operation)
        self.max_attempts = max_attempts
        if not 1 <= page_size <= 100:
            raise StripeSourceError(f"page_size must be between 1 and 100, not {page_size}")
        self.page_size = page_size
        per_operation = self.budget.per_operation
        self.max_workers = max_workers or max(2, min(32, math.ceil(per_operation * 0.35)))
        headers = {"Authorization": f"Bearer {self._key}", "Stripe-Version": api_version}
        self._http = Transport(headers, REQUEST_TIMEOUT_SECONDS)
        self._lock = threading.Lock()
        self._listings = 0  # parallel listings under way
        self.requests_made = 0
        self.retries = 0
        self.server_time: int | None = None
        # Whether Stripe has answered anything in this run: until then, a connection failure
        # is most likely a wrong URL or a firewall, and is reported quickly.
        self.answered = False
        # Seconds a request takes once sent (moving average): with the rate, how many
        # requests must be under way to keep the rate limit busy.
        self.latency = 0.0
        # Process CPU seconds per request (moving average; everything the run does per page),
        # and where it was last measured: (process CPU s, requests made).
        self.cpu_per_request = 0.0
        self._cpu_mark: tuple[float, int] | None = None
        self._recent: deque[float] = deque(maxlen=64)  # the latest requests' round trips
        self._on_request = on_request
        # The first request that failed for good: the run fails with it, so the requests of
        # other threads stop too instead of retrying for nothing.
        self.failed: StripeSourceError | None = None
        self._stop = threading.Event()

    def __repr__(self) -> str:
        return f"StripeApi({self.api_base!r}, key={redact_key(self._key)})"

    # -- single requests -----------------------------------------------------------------------
    def get(
        self, path: str, params: Mapping[str, Any], *, what: str, operation: str | None = None
    ) -> tuple[Any, int] | None:
        """GET with retries: (parsed JSON, server time), or None for a 404.

        `operation` is the rate limit the request counts against (default `GET <path>`).
        """
        query = urlencode(_encode(params))
        url = f"{self.api_base}{path}?{query}" if query else f"{self.api_base}{path}"
        operation = operation or f"GET {path}"
        attempt = 0
        while True:
            attempt += 1
            if self.failed is not None:
                raise type(self.failed)(str(self.failed))  # the same message, once
            self.budget.acquire(operation)
            self._count()
            sent = time.monotonic()
            try:
                body, date = self._send(url)
            except _Failure as failure:
                if failure.kind == "invalid" and failure.status == 404:
                    return None
                if failure.kind not in RETRIED:
                    raise self._fail(self._refused(failure, what)) from None
                if attempt >= self._attempts_allowed(failure):
                    raise self._fail(self._exhausted(failure, what, attempt)) from None
                self._back_off(attempt, failure, operation)
                continue
            self.budget.succeeded(operation)
            took = time.monotonic() - sent
            self.latency = took if not self.latency else 0.8 * self.latency + 0.2 * took
            self._recent.append(took)
            return body, self._note_time(date)

    def _attempts_allowed(self, failure: _Failure) -> int:
        """Attempts worth making: few while nothing has ever answered (a wrong URL or a
        firewall is then far likelier than a blip), `max_attempts` once Stripe has answered."""
        if failure.kind == "connection" and not self.answered:
            return min(self.max_attempts, FIRST_CONTACT_ATTEMPTS)
        return self.max_attempts

    def _send(self, url: str) -> tuple[Any, str | None]:
        """One GET: the parsed body and the Date header, or a `_Failure` saying what went wrong."""
        connect_timeout = CONNECT_TIMEOUT_SECONDS if self.answered else FIRST_CONTACT_TIMEOUT
        try:
            response = self._http.get(url, connect_timeout)
        except TransportError as failed:  # refused, dropped, timed out
            raise _Failure("connection", message=str(failed)) from None
        self.answered = True
        status, request_id = response.status, response.request_id
        try:
            body = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            raise _Failure(
                "server", status, f"Invalid response body from API (HTTP {status})", request_id
            ) from None
        if 200 <= status < 300:
            return body, response.date
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            raise _Failure("server", status, f"Invalid error object (HTTP {status})", request_id)
        message = error.get("message")
        if status == 429 or (status == 400 and error.get("code") == "rate_limit"):
            raise _Failure("rate_limit", status, message, request_id)
        kinds = {400: "invalid", 404: "invalid", 401: "auth", 402: "other", 403: "permission"}
        raise _Failure(kinds.get(status, "server"), status, message, request_id)

    def retrieve(self, path: str, object_id: str, expand: tuple[str, ...] = ()) -> Page:
        """One object by id; an empty page when Stripe says it does not exist."""
        params: dict[str, Any] = {"expand": list(expand)} if expand else {}
        found = self.get(
            f"{path}/{quote(object_id, safe='')}",
            params,
            what=f"{object_id!r}",
            operation=f"GET {path}/{{id}}",
        )
        if found is None:
            return Page([], False, self.server_time or int(time.time()))
        body, server_time = found
        return Page([body], False, server_time)

    def _count(self) -> None:
        with self._lock:
            self.requests_made += 1
        if self._on_request is not None:
            self._on_request()

    def _note_time(self, date_header: str | None) -> int:
        """The server's clock from the Date header: observation times come from Stripe."""
        moment = int(time.time())
        if date_header:
            parsed = email.utils.parsedate_to_datetime(date_header)
            moment = int(parsed.timestamp())
        with self._lock:
            self.server_time = max(self.server_time or moment, moment)
        return moment

    def _back_off(self, attempt: int, failure: _Failure, operation: str) -> None:
        with self._lock:
            self.retries += 1
        if failure.kind == "rate_limit":
            self.budget.rate_limited(operation)
        self._stop.wait(backoff_seconds(attempt))

    def _fail(self, error: StripeSourceError) -> StripeSourceError:
        """Remember the run's first failure and wake every thread backing off."""
        with self._lock:
            if self.failed is None:
                self.failed = error
        self._stop.set()
        return error

    def _refused(self, failure: _Failure, what: str) -> StripeSourceError:
        """An answer that retrying will not change."""
        if failure.kind == "auth":
            return StripeAuthError(
                f"Stripe refused the API key {redact_key(self._key)} (401): {failure.why()} "
                "Check that the key is current and belongs to this account."
            )
        if failure.kind == "permission":
            return StripePermissionError(
                f"The API key {redact_key(self._key)} may not read {what} (403). Use a "
                "secret key, or a restricted key with read access to Coupons, Products, "
                "Promotion codes and Events."
            )
        if failure.kind == "invalid":
            return StripeApiError(f"Stripe rejected the request for {what}: {failure.why()}")
        return StripeApiError(f"Stripe answered an error for {what}: {failure.why()}")

    def _exhausted(self, failure: _Failure, what: str, attempts: int) -> StripeSourceError:
        tries = f"after {attempts} attempts"
        if failure.kind == "connection":
            return StripeUnreachableError(
                f"Cannot reach Stripe at {self.api_base} {tries} while reading {what}. Check "
                "the network and the base URL (--api-base / SOURCES__STRIPE__API_BASE), then "
                "run again: nothing was lost, the next run resumes."
            )
        if failure.kind == "rate_limit":
            return StripeApiError(
                f"Stripe kept rate-limiting (429) {tries} while reading {what}. Lower "
                "max_requests_per_second (or max_requests_per_second_per_operation) if another "
                "client shares this key, then run again: the next run resumes."
            )
        return StripeApiError(
            f"Stripe kept failing ({failure.status}) {tries} while reading {what}: "
            f"{failure.why()} Run again later: the next run resumes."
        )

    # -- listing ---------------------------------------------------------------------------------
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
        workers = self.max_workers if parallel else 1
        if first is None:
            first = self.first_page(path, low=low, high=high, params=base)
        page, rest = first
        yield page
        if rest is None:
            return
        with self._listing(), ThreadPoolExecutor(workers, thread_name_prefix="stripe") as pool:
            running: dict[Future[tuple[Page, Window | None]], tuple[Window, int | None]] = {}
            windows = [rest]
            while windows or running:
                fetched = [window for window, _ in running.values()]
                for window in self._share(windows, fetched, workers):
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

    @contextmanager
    def _listing(self) -> Iterator[None]:
        """Count the listings under way: they share the rate limit."""
        with self._lock:
            self._listings += 1
        try:
            yield
        finally:
            with self._lock:
                self._listings -= 1

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
        params: dict[str, Any] = {**base, "limit": self.page_size}
        if created:
            params["created"] = created
        if after:
            params["starting_after"] = after
        found = self.get(path, params, what=f"{path} (created {created or 'any'})")
        if found is None:
            # The cursor object was deleted while we paged: restart the window at its second,
            # skipping the objects of that second we already have.
            return Page([], True, self.server_time or 0), Window(
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

    def _share(self, windows: list[Window], running: list[Window], workers: int) -> list[Window]:
        """The windows to fetch next: `windows`, plus parts cut off big ones for idle workers.

        Enough windows keep the rate limit busy: this listing's rate (its operation's limit,
        or its share of the account's when listings under way share it) times the latency,
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
        size = self.page_size
        capacity = self._capacity()
        share = min(self.budget.per_operation, capacity / max(1, self._listings))
        # When the CPU is the bottleneck, answers wait for it and round trips look long: the
        # quickest recent one is closer to what the network takes.
        latency = self.latency if capacity >= self.rate else min(self._recent, default=0.0)
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
            cpu, made = time.process_time(), self.requests_made
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
        return min(self.rate, 1.0 / per_request) if per_request > 0 else self.rate


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


def backoff_seconds(attempt: int) -> float:
    """The pause after failed attempt `attempt` (1, 2, ...): doubling from 0.5 s up to
    MAX_BACKOFF_SECONDS, with jitter so threads that failed together retry apart."""
    return min(MAX_BACKOFF_SECONDS, 0.5 * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0)


# Failures worth another attempt: no answer, 429, and 5xx (or any answer that is not JSON).
RETRIED = frozenset({"connection", "rate_limit", "server"})


class _Failure(Exception):
    """A request that got no usable answer: what kind, and Stripe's own words."""

    def __init__(
        self,
        kind: str,  # connection | rate_limit | server | invalid | auth | permission | other
        status: int | None = None,
        message: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(kind, status, message)
        self.kind, self.status, self.message, self.request_id = kind, status, message, request_id

    def why(self) -> str:
        """Stripe's message, with the request id for support."""
        message = self.message or (f"HTTP {self.status}" if self.status else self.kind)
        request = f" (request {self.request_id})" if self.request_id else ""
        return f"{message.rstrip('.')}.{request}"


def _encode(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Parameters in Stripe's bracket notation, as the SDK sends them: `created[gte]=1`,
    `expand[0]=data.applies_to`."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if value is None:
            continue
        if isinstance(value, Mapping):
            pairs += _encode(value, name)
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                pairs += _encode({str(index): item}, name)
        elif isinstance(value, bool):
            pairs.append((name, "true" if value else "false"))
        else:
            pairs.append((name, str(value)))
    return pairs
