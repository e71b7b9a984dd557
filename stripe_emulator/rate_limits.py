"""Stripe's rate limits: account-wide per key mode, plus one limit per named API operation.

Plain state and decisions; the HTTP layer asks `admit` per API request and answers 429 when
refused. Where Stripe's page is silent the strictest reading is the default, with a switch.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["live", "test"]
# Whose budget a request made for a connected account (`Stripe-Account`) draws on: Stripe says
# limits are "per Stripe account" and is silent on Connect, so the strict reading, the
# platform's (every request made with the platform's key shares its windows), is the default.
ConnectBudget = Literal["platform", "per_account"]
CONNECT_BUDGETS: tuple[ConnectBudget, ...] = ("platform", "per_account")
WINDOW_SECONDS = 1.0
DOCS = "learn more about rate limits here https://stripe.com/docs/rate-limits."
OPERATION_NAME = re.compile(r"^(GET|POST|DELETE) /v1/\S+$")
UNKNOWN_OPERATION = "unknown"
DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "live": 100.0,
    "test": 25.0,
    "operation": 25.0,
    "operations": {},
    "count_rejected": True,
}


def key_mode(key: str | None) -> Mode:
    """The mode a key's requests count in: `live` for `sk_live_`/`rk_live_`, else `test`."""
    return "live" if key and "_live_" in key else "test"


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a request is admitted; when not, Stripe's 429 message naming the limit."""

    admitted: bool
    message: str = ""


ADMITTED = Decision(True)


class Window:
    """Arrival times within the last second: at most N requests in any one-second interval."""

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def full(self, now: float, limit: float | None) -> bool:
        """Whether one more request now would exceed `limit` (None: no limit)."""
        while self._times and self._times[0] <= now - WINDOW_SECONDS:
            self._times.popleft()
        return limit is not None and len(self._times) >= limit

    def add(self, now: float) -> None:
        """Count a request that arrived now."""
        self._times.append(now)


class RateLimits:
    """Stripe's documented limits, on by default as in Stripe; thread-safe."""

    enabled: bool
    live: float | None
    test: float | None
    operation: float | None
    operations: dict[str, float | None]
    count_rejected: bool
    connect_budget: ConnectBudget

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        # Keyed by (budget, mode, operation): budget None is the platform's own (the key's
        # account), else a connected account's id (only with connect_budget="per_account").
        self._windows: dict[tuple[str | None, Mode, str | None], Window] = {}
        self._rejected: Counter[str] = Counter()
        self._paused = 0
        self.reset()

    def configure(self, **settings: Any) -> None:
        """Change some settings (`operations` replaces all overrides); unknown names are errors."""
        checked = {name: _check(name, value) for name, value in settings.items()}
        with self._lock:
            for name, value in checked.items():
                setattr(self, name, value)

    def settings(self) -> dict[str, Any]:
        """The current settings, by the names `configure` takes."""
        with self._lock:
            return {name: getattr(self, name) for name in DEFAULTS} | {
                "operations": dict(self.operations)
            }

    def reset(self) -> None:
        """Back to Stripe's defaults, with empty windows and no rejections counted."""
        self.configure(**DEFAULTS)
        with self._lock:
            self.connect_budget = "platform"
            self._windows.clear()
            self._rejected.clear()

    def set_connect_budget(self, budget: str) -> None:
        """Whose windows a request made for a connected account counts in: `"platform"` (the
        default: every request made with the platform's key shares the platform's account-wide
        and per-operation windows) or `"per_account"` (each connected account has its own).

        Kept apart from `settings()`, which names Stripe's documented limits only.
        """
        if budget not in CONNECT_BUDGETS:
            raise ValueError(f"connect_budget is platform or per_account, not {budget!r}")
        with self._lock:
            self.connect_budget = budget

    def rejected(self) -> dict[str, int]:
        """Requests answered 429 so far, by operation (`unknown` for URLs Stripe lacks)."""
        with self._lock:
            return dict(self._rejected)

    def limit_for(self, operation: str) -> float | None:
        """The per-operation limit of one operation: its override, else the default."""
        return self.operations.get(operation, self.operation)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Requests inside the block are neither limited nor counted (a test's own setup)."""
        with self._lock:
            self._paused += 1
        try:
            yield
        finally:
            with self._lock:
                self._paused -= 1

    def admit(self, mode: Mode, operation: str | None, account: str | None = None) -> Decision:
        """Decide one API request as it arrives; `operation` None counts account-wide only.

        `account` is the connected account the request is made for (None: the key's own
        account); it has windows of its own only with `connect_budget="per_account"`.
        """
        with self._lock:
            if not self.enabled or self._paused:
                return ADMITTED
            now = self.clock()
            budget = account if self.connect_budget == "per_account" else None
            account_limit = self.live if mode == "live" else self.test
            whole = self._window(budget, mode, None)
            windows = [whole]
            refusal: Decision | None = None
            if operation is not None:
                own = self._window(budget, mode, operation)
                windows.append(own)
                limit = self.limit_for(operation)
                if own.full(now, limit):
                    refusal = Decision(False, _message(limit, mode, operation))
            if whole.full(now, account_limit) and refusal is None:
                refusal = Decision(False, _message(account_limit, mode, None))
            if refusal is None or self.count_rejected:
                for window in windows:
                    window.add(now)
            if refusal is None:
                return ADMITTED
            self._rejected[operation or UNKNOWN_OPERATION] += 1
            return refusal

    def _window(self, budget: str | None, mode: Mode, operation: str | None) -> Window:
        window = self._windows.get((budget, mode, operation))
        if window is None:
            window = self._windows[(budget, mode, operation)] = Window()
        return window


def _message(limit: float | None, mode: Mode, operation: str | None) -> str:
    """Stripe's 429 message, saying which limit was hit."""
    scope = f"on this endpoint ({operation})" if operation else "across this account"
    return (
        f"Request rate limit exceeded. You can make up to {limit:g} requests per second "
        f"{scope} in {mode} mode; {DOCS}"
    )


def _check(name: str, value: Any) -> Any:
    """A setting's value, validated: a typo or a bad value is an error, not a silent no-op."""
    if name not in DEFAULTS:
        raise ValueError(f"unknown rate limit setting: {name}")
    if name in ("enabled", "count_rejected"):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, not {value!r}")
        return value
    if name == "operations":
        if not isinstance(value, Mapping):
            raise ValueError("operations must map operation names to requests per second")
        for operation in value:
            if not isinstance(operation, str) or not OPERATION_NAME.match(operation):
                raise ValueError(
                    f"operations: {operation!r} is not an operation name such as "
                    "'GET /v1/promotion_codes' or 'GET /v1/promotion_codes/{id}'"
                )
        return {
            operation: _rate(f"operations[{operation}]", rps) for operation, rps in value.items()
        }
    return _rate(name, value)


def _rate(name: str, value: Any) -> float | None:
    """Requests per second above zero, or None for no such limit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{name} must be a number of requests per second above 0, or null")
    return float(value)
