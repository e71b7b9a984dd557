"""One Stripe client per run: sends a GET within the rate limits, retries, words failures.

Pages come back as plain JSON (libcurl, see transport.py; parsed by orjson): no
`StripeObject`s, not even the SDK's `raw_request` (see benchmarks/RESULTS.md for the
measurement). Errors become `StripeSourceError`s whose messages say what to fix and never
contain the API key.
"""

from __future__ import annotations

import email.utils
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from .credentials import check_account, check_api_base, check_key, key_mode, redact_key
from .errors import (
    StripeAccountError,
    StripeApiError,
    StripeAuthError,
    StripePermissionError,
    StripeSourceError,
    StripeUnreachableError,
)
from .rate_limit import RateBudget
from .settings import (
    ACCOUNT_PATH,
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
)
from .transport import Transport, TransportError


@dataclass
class Page:
    """One list page (or retrieved object) and the server's clock when it was served."""

    objects: list[dict[str, Any]]
    has_more: bool
    server_time: int
    # When it arrived (local ns): orders reads within one second of Stripe's clock.
    received_ns: int = field(default_factory=time.time_ns)


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
        account: str | None = None,
        budget: RateBudget | None = None,
    ) -> None:
        self._key = check_key(api_key)
        self.api_version = api_version
        self.api_base = check_api_base(api_base)
        # A connected account this client acts for (Stripe-Account); None: the key's own.
        self.account = check_account(account) if account is not None else None
        self.rate = max_requests_per_second or RATE_LIMITS[key_mode(self._key)]
        # Clients for several accounts of one platform may share one budget: Stripe does not
        # say whose limits a platform's requests for a connected account count against.
        self.budget = budget or RateBudget(self.rate, max_requests_per_second_per_operation)
        self.max_attempts = max_attempts
        if not 1 <= page_size <= 100:
            raise StripeSourceError(f"page_size must be between 1 and 100, not {page_size}")
        self.page_size = page_size
        per_operation = self.budget.per_operation
        self.max_workers = max_workers or max(2, min(32, math.ceil(per_operation * 0.35)))
        headers = {"Authorization": f"Bearer {self._key}", "Stripe-Version": api_version}
        if self.account is not None:
            headers["Stripe-Account"] = self.account
        self._http = Transport(headers, REQUEST_TIMEOUT_SECONDS)
        self._lock = threading.Lock()
        self.requests_made = 0
        self.retries = 0
        self.server_time: int | None = None
        # Whether Stripe has answered anything in this run: until then, a connection failure
        # is most likely a wrong URL or a firewall, and is reported quickly.
        self.answered = False
        # Seconds a request takes once sent (moving average): with the rate, how many
        # requests must be under way to keep the rate limit busy.
        self.latency = 0.0
        # The latest requests' round trips.
        self.recent_round_trips: deque[float] = deque(maxlen=64)
        self._on_request = on_request
        # The first request that failed for good: the run fails with it, so the requests of
        # other threads stop too instead of retrying for nothing.
        self.failed: StripeSourceError | None = None
        self._stop = threading.Event()

    def __repr__(self) -> str:
        account = f", account={self.account!r}" if self.account else ""
        return f"StripeApi({self.api_base!r}, key={redact_key(self._key)}{account})"

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
            self.recent_round_trips.append(took)
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
        if status == 404:  # an observation too (a tombstone): Stripe's clock must stamp it
            self._note_time(response.date)
        kinds = {400: "invalid", 404: "invalid", 401: "auth", 402: "other", 403: "permission"}
        code = error.get("code")
        raise _Failure(kinds.get(status, "server"), status, message, request_id, code)

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

    def own_account(self) -> dict[str, Any]:
        """The account this client acts for: the key's own, or its connected account."""
        found = self.get(ACCOUNT_PATH, {}, what="the account")
        if found is None:
            raise StripeApiError(f"Stripe answered 404 for {ACCOUNT_PATH}.")
        account: dict[str, Any] = found[0]
        return account

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
        if failure.kind == "permission" and failure.code == "account_invalid":
            account = self.account or "(none)"
            return StripeAccountError(
                f"The API key {redact_key(self._key)} may not act for account {account} "
                f"(403): {failure.why()} The account may have disconnected from the platform "
                "or been deleted; the other accounts are not affected.",
                account,
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
        code: str | None = None,  # Stripe's error code, e.g. account_invalid
    ) -> None:
        super().__init__(kind, status, message)
        self.kind, self.status, self.message, self.request_id = kind, status, message, request_id
        self.code = code

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
