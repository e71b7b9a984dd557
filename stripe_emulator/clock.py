"""A controllable clock: real time plus an offset, or frozen at a moment."""

from __future__ import annotations

import threading
import time


class Clock:
    """Emulated "now" in unix seconds; tests advance it to age events and expire coupons."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._frozen: float | None = None
        self._lock = threading.Lock()

    def now(self) -> float:
        """Current emulated time as a float."""
        with self._lock:
            return self._frozen if self._frozen is not None else time.time() + self._offset

    def timestamp(self) -> int:
        """Current emulated time in whole seconds, as Stripe's `created` fields are."""
        return int(self.now())

    def advance(self, seconds: float) -> float:
        """Move time forward (never backwards: Stripe's clock does not go back)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            if self._frozen is not None:
                self._frozen += seconds
            else:
                self._offset += seconds
        return self.now()

    def freeze(self, at: float | None = None) -> None:
        """Stop the clock at `at` (default: now); `advance` still moves it."""
        current = self.now()
        if at is not None and at < current:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._frozen = current if at is None else at

    def unfreeze(self) -> None:
        """Let the clock run again from where it stands."""
        with self._lock:
            if self._frozen is not None:
                self._offset = self._frozen - time.time()
                self._frozen = None

    def reset(self) -> None:
        """Back to real time."""
        with self._lock:
            self._offset = 0.0
            self._frozen = None
