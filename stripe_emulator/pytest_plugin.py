"""pytest fixtures: an emulator per test, serving over HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import EmulatorServer, serve


@pytest.fixture
def stripe_emulator() -> Iterator[EmulatorServer]:
    """A fresh, empty emulator, Stripe's rate limits on (`account.rate_limits.paused()`: setup)."""
    with serve() as server:
        yield server
