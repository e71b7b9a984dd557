"""A live progress line while a run works (stderr), and plain phase lines when not a terminal."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.live import Live
from rich.text import Text

from stripe_promotions import RunStats


class Progress:
    """Shows what a run is doing: phase, rows per table, API requests, time."""

    def __init__(self, stats: RunStats, *, enabled: bool = True, console: Console | None = None):
        self.stats = stats
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.phase = "starting"
        self._stop = threading.Event()

    def line(self) -> Text:
        """The current status line."""
        rows: dict[str, int] = {}
        for key, count in self.stats.rows.items():
            table = key.split("/", 1)[0]
            rows[table] = rows.get(table, 0) + count
        parts = [f"{table} {count:,}" for table, count in sorted(rows.items())]
        elapsed = time.monotonic() - self.stats.started
        text = Text(f"{self.phase:<12} ", style="bold cyan")
        text.append(" · ".join(parts) or "waiting for Stripe")
        accounts, failed = len(self.stats.accounts), len(self.stats.failed_accounts)
        if accounts > 1:
            text.append(f"  {accounts:,} accounts")
            if failed:
                text.append(f", {failed:,} failed", style="bold red")
        requests = self.stats.requests
        noun = "request" if requests == 1 else "requests"
        text.append(f"  ({requests:,} {noun}, {elapsed:.1f}s)", style="dim")
        return text

    @contextmanager
    def step(self, phase: str) -> Iterator[None]:
        """Enter a phase (extracting, normalizing, loading, transforming)."""
        self.phase = phase
        if self.enabled and not self.console.is_terminal:
            self.console.print(f"{phase}…", highlight=False)
        yield

    @contextmanager
    def shown(self) -> Iterator[Progress]:
        """Keep the line live for the duration of the run."""
        if not self.enabled or not self.console.is_terminal:
            yield self
            return
        with Live(self.line(), console=self.console, transient=True, refresh_per_second=8) as live:
            updater = threading.Thread(target=self._refresh, args=(live,), daemon=True)
            updater.start()
            try:
                yield self
            finally:
                self._stop.set()
                updater.join()

    def _refresh(self, live: Live) -> None:
        while not self._stop.wait(0.125):
            live.update(self.line())
