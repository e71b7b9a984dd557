"""Shared fixtures: the Stripe emulator over HTTP, and the SDK client pointed at it."""

from __future__ import annotations

import pytest
import stripe

from stripe_emulator.server import EmulatorServer

pytest_plugins = ["stripe_emulator.pytest_plugin"]

TEST_KEY = "sk_test_emulatorKey0123456789"


@pytest.fixture
def client(stripe_emulator: EmulatorServer) -> stripe.StripeClient:
    """The official SDK, unmodified, talking to the emulator over HTTP."""
    return stripe.StripeClient(TEST_KEY, base_addresses={"api": stripe_emulator.url})
