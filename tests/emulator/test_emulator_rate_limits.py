"""Stripe's rate limits over HTTP through the SDK: per operation, account-wide, per key mode.

The limiter's clock is a hand-moved one, so counts are exact however fast the machine is.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import pytest
import stripe

from stripe_emulator.__main__ import build_account, parse_args
from stripe_emulator.rate_limits import DEFAULTS, RateLimits, key_mode
from stripe_emulator.server import EmulatorServer
from tests.emulator.emulator_support import (
    TEST_KEY,
    assert_stripe_error,
    control,
    emulator_process,
    raw,
    sdk,
    sdk_error_body,
)

LIVE_KEY = "sk_live_emulatorKey0123456789"


class HandClock:
    """A monotonic clock that moves only when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(stripe_emulator: EmulatorServer) -> HandClock:
    """The emulator's rate limits measured on a clock the test moves."""
    hand = HandClock()
    stripe_emulator.account.rate_limits.clock = hand
    return hand


def outcomes(call: Callable[[], Any], times: int) -> list[bool]:
    """Make the call `times` times: True when answered, False when refused with a 429."""
    results = []
    for _ in range(times):
        try:
            call()
        except stripe.RateLimitError as error:
            # The SDK leaves `code` unset on a RateLimitError; the body carries it.
            assert error.http_status == 429, error
            assert sdk_error_body(error)["code"] == "rate_limit", error
            results.append(False)
        else:
            results.append(True)
    return results


def refusal(call: Callable[[], Any]) -> dict[str, Any]:
    """The error body of a call that must be refused with a 429."""
    with pytest.raises(stripe.RateLimitError) as raised:
        call()
    assert raised.value.http_status == 429
    return sdk_error_body(raised.value)


def test_each_operation_has_its_own_limit(
    stripe_emulator: EmulatorServer, clock: HandClock
) -> None:
    live = sdk(stripe_emulator, key=LIVE_KEY)
    with stripe_emulator.account.rate_limits.paused():
        made = [live.v1.coupons.create(params={"percent_off": 5}).id for _ in range(26)]

    assert outcomes(live.v1.coupons.list, 26) == [True] * 25 + [False]
    error = refusal(live.v1.coupons.list)
    assert error["type"] == "invalid_request_error" and error["code"] == "rate_limit"
    assert "25 requests per second on this endpoint (GET /v1/coupons)" in error["message"]
    assert "live mode" in error["message"]
    # Another operation in the same second is untouched; retrieving different ids is one
    # operation, `GET /v1/coupons/{id}`, with a limit of its own.
    assert outcomes(live.v1.products.list, 1) == [True]
    retrieved = [functools.partial(live.v1.coupons.retrieve, coupon_id) for coupon_id in made]
    assert [outcomes(call, 1)[0] for call in retrieved] == [True] * 25 + [False]
    assert stripe_emulator.account.rate_limits.rejected() == {
        "GET /v1/coupons": 2,
        "GET /v1/coupons/{id}": 1,
    }

    clock.advance(1.0)  # the window slides past the burst
    assert outcomes(live.v1.coupons.list, 1) == [True]


def test_the_account_wide_limit_spans_operations(
    stripe_emulator: EmulatorServer, clock: HandClock
) -> None:
    client = sdk(stripe_emulator)  # a test key: 25 requests per second across the account
    calls: list[Callable[[], Any]] = [
        client.v1.coupons.list,
        client.v1.products.list,
        client.v1.promotion_codes.list,
        client.v1.events.list,
        lambda: client.v1.coupons.create(params={"percent_off": 5}),
    ]
    assert all(outcomes(call, 5) == [True] * 5 for call in calls)
    error = refusal(client.v1.products.list)
    assert "25 requests per second across this account in test mode" in error["message"]
    assert "https://stripe.com/docs/rate-limits" in error["message"]
    # Live and test keys are limited separately.
    assert outcomes(sdk(stripe_emulator, key=LIVE_KEY).v1.products.list, 1) == [True]


def test_a_live_key_gets_100_per_second_a_test_key_25(
    stripe_emulator: EmulatorServer, clock: HandClock
) -> None:
    def burst(key: str) -> list[bool]:
        client = sdk(stripe_emulator, key=key)
        calls: list[Callable[[], Any]] = [
            client.v1.coupons.list,
            client.v1.products.list,
            client.v1.promotion_codes.list,
            client.v1.events.list,
        ]
        return [answered for call in calls for answered in outcomes(call, 20)]

    assert burst(LIVE_KEY) == [True] * 80
    test_mode = burst(TEST_KEY)
    assert test_mode.count(True) == 25 and test_mode[:25] == [True] * 25
    assert stripe_emulator.account.rate_limits.rejected() == {
        "GET /v1/products": 15,
        "GET /v1/promotion_codes": 20,
        "GET /v1/events": 20,
    }
    # Restricted keys count in their key's mode as well.
    assert key_mode("rk_live_abcdefgh12") == "live" and key_mode("rk_test_abcdefgh12") == "test"
    assert key_mode(None) == "test"


def test_per_operation_overrides(stripe_emulator: EmulatorServer, clock: HandClock) -> None:
    limits = stripe_emulator.account.rate_limits
    limits.configure(operations={"GET /v1/promotion_codes": 50, "GET /v1/events": 2})
    live = sdk(stripe_emulator, key=LIVE_KEY)
    assert outcomes(live.v1.promotion_codes.list, 51) == [True] * 50 + [False]
    assert outcomes(live.v1.events.list, 3) == [True, True, False]
    assert outcomes(live.v1.coupons.list, 26) == [True] * 25 + [False]
    assert (
        "up to 50 requests per second on this endpoint"
        in refusal(live.v1.promotion_codes.list)["message"]
    )
    with pytest.raises(ValueError, match="operation name"):
        limits.configure(operations={"promotion_codes": 50})
    with pytest.raises(ValueError, match="unknown rate limit setting"):
        limits.configure(per_operation=50)
    with pytest.raises(ValueError, match="above 0"):
        limits.configure(test=0)


def test_switching_limits_off_and_pausing_them(
    stripe_emulator: EmulatorServer, clock: HandClock
) -> None:
    limits = stripe_emulator.account.rate_limits
    client = sdk(stripe_emulator)
    with limits.paused():
        assert outcomes(client.v1.coupons.list, 40) == [True] * 40
    # What ran paused did not count: the code under test starts with a full allowance.
    assert outcomes(client.v1.coupons.list, 26) == [True] * 25 + [False]
    limits.configure(enabled=False)
    assert outcomes(client.v1.coupons.list, 40) == [True] * 40
    limits.configure(enabled=True, operation=None, test=30)  # no per-operation limit
    clock.advance(1.0)
    assert outcomes(client.v1.coupons.list, 31) == [True] * 30 + [False]


@pytest.mark.parametrize("count_rejected", [True, False])
def test_whether_a_refused_request_counts(
    stripe_emulator: EmulatorServer, clock: HandClock, count_rejected: bool
) -> None:
    limits = stripe_emulator.account.rate_limits
    if not count_rejected:
        limits.configure(count_rejected=False)
    client = sdk(stripe_emulator)
    assert outcomes(client.v1.coupons.list, 25) == [True] * 25
    clock.advance(0.6)
    assert outcomes(client.v1.coupons.list, 10) == [False] * 10  # a client that keeps trying
    clock.advance(0.5)  # the first 25 have left the window; the 10 refusals have not
    answered = outcomes(client.v1.coupons.list, 25)
    if count_rejected:
        assert answered == [True] * 15 + [False] * 10
    else:
        assert answered == [True] * 25
    assert limits.rejected() == {"GET /v1/coupons": 20 if count_rejected else 10}


def test_the_window_slides(stripe_emulator: EmulatorServer, clock: HandClock) -> None:
    client = sdk(stripe_emulator)
    clock.now = 1000.9
    assert outcomes(client.v1.coupons.list, 25) == [True] * 25
    # A fixed window per calendar second would start afresh at 1001.0: any one second counts.
    clock.now = 1001.1
    assert outcomes(client.v1.coupons.list, 1) == [False]
    clock.now = 1001.95
    assert outcomes(client.v1.coupons.list, 1) == [True]


def test_a_429_carries_no_retry_headers_and_the_sdk_does_not_retry_it(
    stripe_emulator: EmulatorServer, clock: HandClock
) -> None:
    account = stripe_emulator.account
    account.rate_limits.configure(test=1)
    assert raw(stripe_emulator, "GET", "/v1/coupons").status == 200
    limited = raw(stripe_emulator, "GET", "/v1/coupons")
    assert_stripe_error(limited, 429, code="rate_limit")
    assert limited.headers["Request-Id"].startswith("req_") and "Date" in limited.headers
    assert "Retry-After" not in limited.headers
    assert "Stripe-Should-Retry" not in limited.headers
    account.requests.clear()
    retrying = sdk(stripe_emulator, retries=3)
    assert outcomes(retrying.v1.coupons.list, 1) == [False]
    assert sum(account.requests.values()) == 1


def test_unknown_urls_count_account_wide_only(
    stripe_emulator: EmulatorServer, clock: HandClock
) -> None:
    for _ in range(25):
        assert raw(stripe_emulator, "GET", "/v1/customers").status == 404
    unknown = raw(stripe_emulator, "GET", "/v1/customers")
    assert "across this account" in assert_stripe_error(unknown, 429, code="rate_limit")["message"]
    assert "across this account" in refusal(sdk(stripe_emulator).v1.coupons.list)["message"]
    assert stripe_emulator.account.rate_limits.rejected() == {"unknown": 1, "GET /v1/coupons": 1}
    # The emulator's own controls are never limited.
    assert all(control(stripe_emulator, "GET", "clock").status == 200 for _ in range(30))


def test_injected_faults_and_limits_together(
    stripe_emulator: EmulatorServer, clock: HandClock
) -> None:
    account = stripe_emulator.account
    account.rate_limits.configure(test=2)
    account.faults.configure(error_rate=1)
    client = sdk(stripe_emulator)
    with pytest.raises(stripe.APIError):
        client.v1.coupons.list()
    with pytest.raises(stripe.APIError):
        client.v1.coupons.list()
    # A refused request is refused: no server error is drawn (or counted) for it.
    assert outcomes(client.v1.coupons.list, 1) == [False]
    assert account.faults.injected() == {"server_error": 2}


def test_the_http_control(stripe_emulator: EmulatorServer, clock: HandClock) -> None:
    current = control(stripe_emulator, "GET", "rate_limits")
    assert current.status == 200
    assert current.body == {**DEFAULTS, "rejected": {}}
    changed = control(
        stripe_emulator,
        "POST",
        "rate_limits",
        {"test": 3, "operations": {"GET /v1/coupons": 2}, "count_rejected": False},
    )
    assert changed.status == 200
    assert changed.body["test"] == 3 and changed.body["operations"] == {"GET /v1/coupons": 2}
    assert changed.body["count_rejected"] is False and changed.body["live"] == 100
    client = sdk(stripe_emulator)
    assert outcomes(client.v1.coupons.list, 3) == [True, True, False]
    assert outcomes(client.v1.products.list, 2) == [True, False]  # 3 admitted account-wide
    assert control(stripe_emulator, "GET", "rate_limits").body["rejected"] == {
        "GET /v1/coupons": 1,
        "GET /v1/products": 1,
    }
    assert control(stripe_emulator, "POST", "rate_limits", {"burst": 5}).status == 400
    assert control(stripe_emulator, "POST", "rate_limits", {"test": -1}).status == 400
    assert control(stripe_emulator, "POST", "rate_limits", {"enabled": "no"}).status == 400
    off = control(stripe_emulator, "POST", "rate_limits", {"enabled": False})
    assert off.body["enabled"] is False
    assert outcomes(client.v1.coupons.list, 5) == [True] * 5
    control(stripe_emulator, "POST", "reset")
    assert control(stripe_emulator, "GET", "rate_limits").body == {**DEFAULTS, "rejected": {}}


def test_the_limiter_alone() -> None:
    now = [0.0]
    limits = RateLimits(clock=lambda: now[0])
    limits.configure(live=3, operation=2)
    decisions = [limits.admit("live", f"GET /v1/{kind}").admitted for kind in "aabbc"]
    assert decisions == [True, True, True, False, False]
    assert limits.admit("test", "GET /v1/a").admitted  # test mode has windows of its own
    assert not limits.admit("live", None).admitted
    now[0] = 1.0
    assert limits.admit("live", None).admitted
    assert limits.rejected() == {"GET /v1/b": 1, "GET /v1/c": 1, "unknown": 1}
    limits.reset()
    assert limits.settings() == DEFAULTS and limits.rejected() == {}
    with limits.paused():
        limits.reset()  # a pause belongs to its block, whatever happens inside
        assert limits.admit("test", None).admitted
    assert [limits.admit("test", None).admitted for _ in range(26)] == [True] * 25 + [False]


def test_command_line_flags() -> None:
    defaults = build_account(parse_args([])).rate_limits.settings()
    assert defaults == DEFAULTS
    args = parse_args(
        [
            "--live-rate-limit",
            "200",
            "--test-rate-limit",
            "40",
            "--operation-rate-limit",
            "30",
            "--operation-rate-limit-override",
            "GET /v1/promotion_codes=50",
            "--operation-rate-limit-override",
            "GET /v1/promotion_codes/{id}=5.5",
            "--no-rate-limit-count-rejected",
        ]
    )
    assert build_account(args).rate_limits.settings() == {
        "enabled": True,
        "live": 200,
        "test": 40,
        "operation": 30,
        "operations": {"GET /v1/promotion_codes": 50, "GET /v1/promotion_codes/{id}": 5.5},
        "count_rejected": False,
    }
    assert build_account(parse_args(["--no-rate-limits"])).rate_limits.enabled is False


@pytest.mark.parametrize(
    "flags",
    [
        ["--test-rate-limit", "0"],
        ["--live-rate-limit", "fast"],
        ["--operation-rate-limit-override", "GET /v1/coupons"],
        ["--operation-rate-limit-override", "coupons=5"],
        ["--rate-limit", "25"],
    ],
)
def test_bad_rate_limit_flags_are_refused(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(flags)
    assert exited.value.code == 2
    assert flags[0] in capsys.readouterr().err


def test_served_with_limits_from_the_command_line() -> None:
    with emulator_process("--test-rate-limit", "1") as (line, client):
        assert re.search(r"rate limits 100/s live, 1/s test, 25/s per operation", line), line
        assert False in outcomes(client.v1.coupons.list, 5)
