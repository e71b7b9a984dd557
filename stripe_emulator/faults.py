"""Fault injection: latency, server errors and dropped connections (rate limits: rate_limits.py).

Plain state and decisions; the HTTP layer carries them out.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["ok", "server_error", "drop"]


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with one request: wait this long, then answer (or not) as `outcome`."""

    latency: float
    outcome: Outcome


@dataclass
class Faults:
    """PipelineConfig tests and benchmarks turn on; all off by default."""

    latency_ms: float = 0.0
    latency_max_ms: float | None = None
    error_rate: float = 0.0
    drop_rate: float = 0.0
    seed: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _injected: Counter[str] = field(default_factory=Counter, repr=False)

    def configure(self, **settings: float | int | None) -> None:
        """Change some settings; unknown names are an error, not a silent no-op."""
        for name, value in settings.items():
            if name.startswith("_") or not hasattr(self, name):
                moved = (
                    " (rate limits: account.rate_limits)" if name.startswith("rate_limit") else ""
                )
                raise ValueError(f"unknown fault setting: {name}{moved}")
            setattr(self, name, value)
        if "seed" in settings:
            self._rng.seed(self.seed)

    def reset(self) -> None:
        """All faults off."""
        self.configure(latency_ms=0.0, latency_max_ms=None, error_rate=0.0, drop_rate=0.0)
        self._injected.clear()

    def injected(self) -> dict[str, int]:
        """Faults injected so far, by outcome (`server_error`, `drop`)."""
        with self._lock:
            return dict(self._injected)

    def plan(self, *, failures: bool = True) -> Plan:
        """Decide one API request's fate; a request already refused (429) draws latency only."""
        with self._lock:
            latency = self.latency_ms
            if self.latency_max_ms is not None and self.latency_max_ms > latency:
                latency = self._rng.uniform(latency, self.latency_max_ms)
            outcome: Outcome = "ok"
            if failures:
                roll = self._rng.random()
                if roll < self.drop_rate:
                    outcome = "drop"
                elif roll < self.drop_rate + self.error_rate:
                    outcome = "server_error"
            if outcome != "ok":
                self._injected[outcome] += 1
            return Plan(latency / 1000, outcome)
