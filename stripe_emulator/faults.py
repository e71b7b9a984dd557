"""Fault injection: latency, rate limiting, server errors and dropped connections.

Plain state and decisions; the HTTP layer carries them out.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["ok", "rate_limited", "server_error", "drop"]


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with one request: wait this long, then answer (or not) as `outcome`."""

    latency: float
    outcome: Outcome


@dataclass
class Faults:
    """Settings tests and benchmarks turn on; all off by default."""

    latency_ms: float = 0.0
    latency_max_ms: float | None = None
    rate_limit: float | None = None
    error_rate: float = 0.0
    drop_rate: float = 0.0
    seed: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _window: deque[float] = field(default_factory=deque, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _injected: Counter[str] = field(default_factory=Counter, repr=False)

    def configure(self, **settings: float | int | None) -> None:
        """Change some settings; unknown names are an error, not a silent no-op."""
        for name, value in settings.items():
            if name.startswith("_") or not hasattr(self, name):
                raise ValueError(f"unknown fault setting: {name}")
            setattr(self, name, value)
        if "seed" in settings:
            self._rng.seed(self.seed)

    def reset(self) -> None:
        """All faults off."""
        self.configure(
            latency_ms=0.0, latency_max_ms=None, rate_limit=None, error_rate=0.0, drop_rate=0.0
        )
        self._window.clear()
        self._injected.clear()

    def injected(self) -> dict[str, int]:
        """Faults injected so far, by outcome (`rate_limited`, `server_error`, `drop`)."""
        with self._lock:
            return dict(self._injected)

    def plan(self) -> Plan:
        """Decide the fate of one API request as it arrives."""
        with self._lock:
            latency = self.latency_ms
            if self.latency_max_ms is not None and self.latency_max_ms > latency:
                latency = self._rng.uniform(latency, self.latency_max_ms)
            outcome: Outcome = "ok"
            if self.rate_limit and not self._admit(time.monotonic()):
                outcome = "rate_limited"
            else:
                roll = self._rng.random()
                if roll < self.drop_rate:
                    outcome = "drop"
                elif roll < self.drop_rate + self.error_rate:
                    outcome = "server_error"
            if outcome != "ok":
                self._injected[outcome] += 1
            return Plan(latency / 1000, outcome)

    def _admit(self, now: float) -> bool:
        """A sliding one-second window: at most `rate_limit` requests in any second."""
        assert self.rate_limit is not None
        while self._window and self._window[0] <= now - 1.0:
            self._window.popleft()
        if len(self._window) >= self.rate_limit:
            return False
        self._window.append(now)
        return True
