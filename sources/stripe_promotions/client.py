"""HTTP and paging mechanics: one Stripe client per run, rate-limited, retrying, parallel.

Pages come back as plain JSON (`raw_request`): no `StripeObject`s are built (see
benchmarks/RESULTS.md for the measurement). Errors become `StripeSourceError`s whose
messages say what to fix and never contain the API key.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import stripe

from .settings import (
    API_VERSION,
    MAX_ATTEMPTS,
    MAX_BACKOFF_SECONDS,
    PAGE_SIZE,
    RATE_LIMITS,
    REQUEST_TIMEOUT_SECONDS,
    STRIPE_EPOCH,
)

KEY_FORMAT = re.compile(r"^(sk|rk)_(test|live)_[0-9A-Za-z]+$")


class StripeSourceError(Exception):
    """A problem the user must fix (or retry later); the message says which."""


class StripeAuthError(StripeSourceError):
    """Stripe refused the key (401)."""


class StripePermissionError(StripeSourceError):
    """The key may not read what we need (403)."""


class StripeUnreachableError(StripeSourceError):
    """No answer from the base URL after every retry."""


class StripeApiError(StripeSourceError):
    """Any other error answer, including retries exhausted on 429 or 5xx."""


def now_ms() -> int:
    """The local clock in milliseconds: orders observations made within one Stripe second."""
    return time.time_ns() // 1_000_000


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


class RateLimiter:
    """Spaces requests evenly at `rate` per second, shared by every thread of a run."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise StripeSourceError(f"max_requests_per_second must be positive, not {rate}")
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Block until this caller may send its request."""
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)

    def slow_down(self, seconds: float) -> None:
        """After a 429: nobody sends for a while."""
        with self._lock:
            self._next = max(self._next, time.monotonic() + seconds)


@dataclass
class Page:
    """One list page (or retrieved object) and the server's clock when it was served."""

    objects: list[dict[str, Any]]
    has_more: bool
    server_time: int
    received_ms: int = field(default_factory=lambda: now_ms())


@dataclass
class Window:
    """Part of a listing: objects with `low <= created <= high`, older than `after`."""

    low: int | None
    high: int | None
    after: str | None = None
    seen_at_high: set[str] = field(default_factory=set)


class StripeApi:
    """A read-only Stripe client for one run: pinned version, rate limit, retries."""

    def __init__(
        self,
        api_key: str,
        api_base: str,
        *,
        api_version: str = API_VERSION,
        max_requests_per_second: float | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        max_workers: int | None = None,
        page_size: int = PAGE_SIZE,
        on_request: Callable[[], None] | None = None,
    ) -> None:
        self._key = check_key(api_key)
        self.api_version = api_version
        self.api_base = check_api_base(api_base)
        self.rate = max_requests_per_second or RATE_LIMITS[key_mode(self._key)]
        self.limiter = RateLimiter(self.rate)
        self.max_attempts = max_attempts
        if not 1 <= page_size <= 100:
            raise StripeSourceError(f"page_size must be between 1 and 100, not {page_size}")
        self.page_size = page_size
        self.max_workers = max_workers or max(2, min(32, math.ceil(self.rate * 0.35)))
        self._client = stripe.StripeClient(
            self._key,
            base_addresses={"api": self.api_base},
            stripe_version=api_version,
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=(10, REQUEST_TIMEOUT_SECONDS)),
        )
        self._lock = threading.Lock()
        self.requests_made = 0
        self.retries = 0
        self.server_time: int | None = None
        self._on_request = on_request

    def __repr__(self) -> str:
        return f"StripeApi({self.api_base!r}, key={redact_key(self._key)})"

    # -- single requests -----------------------------------------------------------------------
    def get(self, path: str, params: Mapping[str, Any], *, what: str) -> tuple[Any, int] | None:
        """GET with retries: (parsed JSON, server time), or None for a 404."""
        for attempt in range(1, self.max_attempts + 1):
            self.limiter.acquire()
            self._count()
            try:
                response = self._client.raw_request("get", path, **params)
            except stripe.InvalidRequestError as error:
                if error.http_status == 404:
                    return None
                raise StripeApiError(
                    f"Stripe rejected the request for {what}: {_why(error)}"
                ) from None
            except stripe.AuthenticationError as error:
                raise StripeAuthError(
                    f"Stripe refused the API key {redact_key(self._key)} (401): {_why(error)} "
                    "Check that the key is current and belongs to this account."
                ) from None
            except stripe.PermissionError:
                raise StripePermissionError(
                    f"The API key {redact_key(self._key)} may not read {what} (403). Use a "
                    "secret key, or a restricted key with read access to Coupons, Products, "
                    "Promotion codes and Events."
                ) from None
            except (stripe.RateLimitError, stripe.APIError, stripe.APIConnectionError) as error:
                if attempt == self.max_attempts:
                    raise self._exhausted(error, what) from None
                self._back_off(attempt, error)
                continue
            except stripe.StripeError as error:
                raise StripeApiError(
                    f"Stripe answered an error for {what}: {_why(error)}"
                ) from None
            return response.data, self._note_time(response.headers.get("Date"))
        raise AssertionError("unreachable")

    def retrieve(self, path: str, object_id: str, expand: tuple[str, ...] = ()) -> Page:
        """One object by id; an empty page when Stripe says it does not exist."""
        params: dict[str, Any] = {"expand": list(expand)} if expand else {}
        found = self.get(f"{path}/{object_id}", params, what=f"{object_id!r}")
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

    def _back_off(self, attempt: int, error: stripe.StripeError) -> None:
        with self._lock:
            self.retries += 1
        delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
        if isinstance(error, stripe.RateLimitError):
            self.limiter.slow_down(delay)
        time.sleep(delay)

    def _exhausted(self, error: stripe.StripeError, what: str) -> StripeSourceError:
        tries = f"after {self.max_attempts} attempts"
        if isinstance(error, stripe.APIConnectionError):
            return StripeUnreachableError(
                f"Cannot reach Stripe at {self.api_base} {tries} while reading {what}. Check "
                "the network and the base URL (--api-base / SOURCES__STRIPE__API_BASE), then "
                "run again: nothing was lost, the next run resumes."
            )
        if isinstance(error, stripe.RateLimitError):
            return StripeApiError(
                f"Stripe kept rate-limiting (429) {tries} while reading {what}. Lower "
                "max_requests_per_second, then run again: the next run resumes."
            )
        return StripeApiError(
            f"Stripe kept failing ({error.http_status}) {tries} while reading {what}: "
            f"{_why(error)} Run again later: the next run resumes."
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
        follow, the rest of the range is cut into windows fetched in parallel, and a window
        that turns out dense is cut again.
        """
        base = dict(params or {})
        workers = self.max_workers if parallel else 1
        if first is None:
            first = self.first_page(path, low=low, high=high, params=base)
        page, rest = first
        yield page
        if rest is None:
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stripe") as pool:
            running: set[Future[tuple[Page, Window | None]]] = set()
            windows = [rest]
            while windows or running:
                for window in _split_all(windows, workers - len(running)):
                    running.add(pool.submit(self._fetch, path, base, window))
                windows = []
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    page, remaining = future.result()
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
        return self._fetch(path, dict(params or {}), Window(max(low or 0, STRIPE_EPOCH), high))

    def _fetch(
        self, path: str, base: Mapping[str, Any], window: Window
    ) -> tuple[Page, Window | None]:
        """One page of a window, and what remains of the window after it."""
        created = {k: v for k, v in (("gte", window.low), ("lte", window.high)) if v is not None}
        params: dict[str, Any] = {**base, "limit": self.page_size}
        if created:
            params["created"] = created
        if window.after:
            params["starting_after"] = window.after
        found = self.get(path, params, what=f"{path} (created {created or 'any'})")
        if found is None:
            # The cursor object was deleted while we paged: restart the window at its second,
            # skipping the objects of that second we already have.
            return Page([], True, self.server_time or 0), Window(
                window.low, window.high, None, window.seen_at_high
            )
        body, server_time = found
        objects = [o for o in body["data"] if o["id"] not in window.seen_at_high]
        page = Page(objects, bool(body["has_more"]), server_time)
        if not body["has_more"] or not body["data"]:
            return page, None
        last = body["data"][-1]
        same_second = {o["id"] for o in body["data"] if o["created"] == last["created"]}
        if window.high is not None and last["created"] == window.high:
            same_second |= window.seen_at_high
        return page, Window(window.low, last["created"], last["id"], same_second)


def _split_all(windows: list[Window], idle: int) -> list[Window]:
    """Hand idle workers a share of the remaining windows by cutting the widest ones."""
    out = list(windows)
    spare = idle - len(out)
    while spare > 0:
        widest = max(
            (w for w in out if w.low is not None and w.high is not None and w.high - w.low >= 2),
            key=lambda w: (w.high or 0) - (w.low or 0),
            default=None,
        )
        if widest is None:
            break
        parts = _split(widest, spare)
        if len(parts) == 1:
            break
        out.remove(widest)
        out.extend(parts)
        spare = idle - len(out)
    return out


def _split(window: Window, idle: int) -> list[Window]:
    """Cut the rest of a window into up to `idle + 1` parts when it spans enough seconds."""
    if idle <= 0 or window.low is None or window.high is None or window.high - window.low < 2:
        return [window]
    parts = min(idle + 1, window.high - window.low)
    step = (window.high - window.low) / parts
    bounds = [window.low + round(step * i) for i in range(parts + 1)]
    windows = [Window(bounds[i], bounds[i + 1] - 1) for i in range(parts - 1)]
    # The newest part keeps the cursor, which sits in its top second.
    windows.append(Window(bounds[parts - 1], window.high, window.after, window.seen_at_high))
    return windows


def _why(error: stripe.StripeError) -> str:
    """Stripe's own message for an error, with the request id for support."""
    message = error.user_message or str(error) or type(error).__name__
    request_id = getattr(error, "request_id", None)
    return f"{message.rstrip('.')}." + (f" (request {request_id})" if request_id else "")
