"""The /_emulator controls and the Python API behind them; fault injection; idempotency."""

from __future__ import annotations

import time
import uuid

import pytest
import requests
import stripe

from stripe_emulator.rate_limits import RateLimits
from stripe_emulator.server import EmulatorServer
from tests.emulator.emulator_support import (
    assert_stripe_error,
    control,
    ids,
    plain,
    raw,
    sdk,
)


def test_reset_forgets_everything(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    account = stripe_emulator.account
    first_id = client.v1.coupons.create(params={"percent_off": 5}).id
    client.v1.products.create(params={"name": "Gone"})
    account.advance_clock(3600)
    account.faults.configure(latency_ms=1)
    account.keys.set_access("sk_test_restricted01", "revoked")
    account.set_event_delay(9)
    account.set_api_version("2024-06-20")
    account.rate_limits.configure(test=1, operations={"GET /v1/coupons": 1}, count_rejected=False)

    reset = control(stripe_emulator, "POST", "reset")
    assert reset.status == 200 and reset.body == {"ok": True}
    assert client.v1.coupons.list().data == [] and client.v1.products.list().data == []
    assert client.v1.events.list().data == []
    assert abs(account.clock.now() - time.time()) < 60
    assert account.faults.latency_ms == 0
    assert account.events.visibility_delay == 0
    assert account.api_version == "2026-10-28.endive"
    assert account.rate_limits.settings() == RateLimits().settings()
    assert raw(stripe_emulator, "GET", "/v1/coupons", key="sk_test_restricted01").status == 200
    # Ids are deterministic from a reset: the same sequence starts again.
    assert client.v1.coupons.create(params={"percent_off": 5}).id == first_id


def test_reset_also_forgets_idempotency_keys(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    key = f"reset-{uuid.uuid4()}"
    client.v1.coupons.create(
        params={"id": "ONE", "percent_off": 5}, options={"idempotency_key": key}
    )
    stripe_emulator.account.reset()
    again = client.v1.coupons.create(
        params={"id": "ONE", "percent_off": 5}, options={"idempotency_key": key}
    )
    assert again.last_response is not None
    assert "Idempotent-Replayed" not in again.last_response.headers
    assert ids(client.v1.coupons.list().data) == ["ONE"]


def test_seed_over_http(client: stripe.StripeClient, stripe_emulator: EmulatorServer) -> None:
    seeded = control(stripe_emulator, "POST", "seed", {"preset": "demo"})
    assert seeded.status == 200
    counts = seeded.body
    assert set(counts) == {"coupons", "products", "promotion_codes", "events"}
    assert counts["promotion_codes"] == 60
    for kind in ("coupons", "products", "promotion_codes", "events"):
        listed = getattr(client.v1, kind).list(params={"limit": 100}).auto_paging_iter()
        assert len(ids(listed)) == counts[kind], kind
    sized = control(
        stripe_emulator, "POST", "seed", {"promotion_codes": 30, "coupons": 3, "products": 2}
    )
    assert sized.status == 200 and sized.body["promotion_codes"] == 90
    assert control(stripe_emulator, "POST", "seed", {"preset": "huge"}).status == 400
    assert control(stripe_emulator, "POST", "seed", {"colour": 1}).status == 400


def test_clock_over_http(client: stripe.StripeClient, stripe_emulator: EmulatorServer) -> None:
    before = control(stripe_emulator, "GET", "clock").body["now"]
    assert abs(before - time.time()) < 5
    frozen = control(stripe_emulator, "POST", "clock", {"freeze": True}).body["now"]
    time.sleep(0.02)
    assert control(stripe_emulator, "GET", "clock").body["now"] == frozen
    advanced = control(stripe_emulator, "POST", "clock", {"advance": 86400}).body["now"]
    assert advanced == frozen + 86400
    coupon = client.v1.coupons.create(params={"percent_off": 5})
    assert coupon.created == int(advanced)
    assert control(stripe_emulator, "POST", "clock", {"advance": -5}).status == 400
    control(stripe_emulator, "POST", "clock", {"freeze": False})
    time.sleep(0.02)
    assert control(stripe_emulator, "GET", "clock").body["now"] > advanced


def test_api_version_over_http(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    changed = control(stripe_emulator, "POST", "api_version", {"api_version": "2024-06-20"})
    assert changed.status == 200 and changed.body == {"api_version": "2024-06-20"}
    assert stripe_emulator.account.api_version == "2024-06-20"
    client.v1.coupons.create(params={"percent_off": 5})
    assert client.v1.events.list().data[0].api_version == "2024-06-20"
    assert control(stripe_emulator, "POST", "api_version", {"api_version": "bad"}).status == 400
    assert control(stripe_emulator, "POST", "api_version", {}).status == 400


def test_redeem_over_http(client: stripe.StripeClient, stripe_emulator: EmulatorServer) -> None:
    client.v1.coupons.create(params={"id": "R", "percent_off": 5, "max_redemptions": 1})
    code = client.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": "R"}})
    redeemed = control(stripe_emulator, "POST", f"promotion_codes/{code.id}/redeem")
    assert redeemed.status == 200 and redeemed.body["times_redeemed"] == 1
    assert redeemed.body["active"] is False  # its coupon reached max_redemptions
    assert client.v1.coupons.retrieve("R").times_redeemed == 1
    again = control(stripe_emulator, "POST", f"promotion_codes/{code.id}/redeem")
    assert again.status == 400 and "error" in again.body
    missing = control(stripe_emulator, "POST", "promotion_codes/promo_nope/redeem")
    assert missing.status == 404 and missing.body["error"]["code"] == "resource_missing"


def test_redeem_respects_the_codes_own_limits(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    account = stripe_emulator.account
    account.clock.freeze()
    client.v1.coupons.create(params={"id": "R", "percent_off": 5})
    capped = client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": "R"}, "max_redemptions": 1}
    )
    expiring = client.v1.promotion_codes.create(
        params={
            "promotion": {"type": "coupon", "coupon": "R"},
            "expires_at": account.clock.timestamp() + 10,
        }
    )
    account.redeem(capped.id)
    assert control(stripe_emulator, "POST", f"promotion_codes/{capped.id}/redeem").status == 400
    account.advance_clock(10)
    assert control(stripe_emulator, "POST", f"promotion_codes/{expiring.id}/redeem").status == 400
    assert client.v1.coupons.retrieve("R").times_redeemed == 1


def test_request_counts(client: stripe.StripeClient, stripe_emulator: EmulatorServer) -> None:
    client.v1.coupons.list()
    client.v1.coupons.list()
    client.v1.products.list()
    client.v1.coupons.create(params={"id": "N", "percent_off": 5})
    client.v1.coupons.retrieve("N")
    counts = control(stripe_emulator, "GET", "requests").body
    assert counts["total"] == 5
    assert counts["by_endpoint"] == {
        "GET /v1/coupons": 2,
        "GET /v1/products": 1,
        "POST /v1/coupons": 1,
        "GET /v1/coupons/{id}": 1,
    }
    cleared = control(stripe_emulator, "DELETE", "requests").body
    assert cleared == {"total": 0, "by_endpoint": {}, "by_account": {}}
    client.v1.events.list()
    assert control(stripe_emulator, "GET", "requests").body["total"] == 1
    assert sum(stripe_emulator.account.requests.values()) == 1


def test_state_over_http(client: stripe.StripeClient, stripe_emulator: EmulatorServer) -> None:
    coupon = plain(client.v1.coupons.create(params={"id": "S", "percent_off": 5}))
    product = plain(client.v1.products.create(params={"name": "S"}))
    assert control(stripe_emulator, "GET", "state/coupon").body == {"S": coupon}
    assert control(stripe_emulator, "GET", "state/product").body == {product["id"]: product}
    assert control(stripe_emulator, "GET", "state/promotion_code").body == {}
    events = control(stripe_emulator, "GET", "state/event").body
    assert sorted(e["type"] for e in events.values()) == ["coupon.created", "product.created"]
    assert control(stripe_emulator, "GET", "state/customer").status == 400


def test_controls_reject_bad_json(stripe_emulator: EmulatorServer) -> None:
    response = requests.post(
        f"{stripe_emulator.url}/_emulator/clock",
        data="{not json",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400 and "error" in response.json()


def test_rate_limits_are_not_a_fault(stripe_emulator: EmulatorServer) -> None:
    # One concept, one name: rate limits live in account.rate_limits (/_emulator/rate_limits).
    refused = control(stripe_emulator, "POST", "faults", {"rate_limit": 2})
    assert refused.status == 400 and "rate_limits" in refused.body["error"]["message"]
    with pytest.raises(ValueError, match="rate_limits"):
        stripe_emulator.account.faults.configure(rate_limit=2)
    assert "rate_limit" not in control(stripe_emulator, "POST", "faults", {}).body


def test_error_rate_gives_500(stripe_emulator: EmulatorServer) -> None:
    stripe_emulator.account.faults.configure(error_rate=1)
    with pytest.raises(stripe.APIError) as raised:
        sdk(stripe_emulator).v1.coupons.create(params={"percent_off": 5})
    assert raised.value.http_status == 500
    result = raw(stripe_emulator, "GET", "/v1/products")
    assert_stripe_error(result, 500, type="api_error")
    assert stripe_emulator.account.state("coupon") == {}
    control(stripe_emulator, "POST", "faults", {"error_rate": 0})
    assert sdk(stripe_emulator).v1.coupons.list().data == []


def test_drop_rate_gives_connection_errors(stripe_emulator: EmulatorServer) -> None:
    control(stripe_emulator, "POST", "faults", {"drop_rate": 1})
    with pytest.raises(stripe.APIConnectionError):
        sdk(stripe_emulator).v1.coupons.list()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{stripe_emulator.url}/v1/coupons", timeout=10)
    stripe_emulator.account.faults.configure(drop_rate=0)
    assert sdk(stripe_emulator).v1.coupons.list().data == []


def test_latency_delays_responses(stripe_emulator: EmulatorServer) -> None:
    client = sdk(stripe_emulator)
    control(stripe_emulator, "POST", "faults", {"latency_ms": 150})
    started = time.monotonic()
    client.v1.coupons.list()
    assert time.monotonic() - started >= 0.15
    stripe_emulator.account.faults.configure(latency_ms=50, latency_max_ms=80)
    started = time.monotonic()
    raw(stripe_emulator, "GET", "/v1/products")
    assert time.monotonic() - started >= 0.05


def test_fault_settings_are_validated(stripe_emulator: EmulatorServer) -> None:
    assert control(stripe_emulator, "POST", "faults", {"nonsense": 1}).status == 400
    with pytest.raises(ValueError):
        stripe_emulator.account.faults.configure(_rng=None)
    delayed = control(stripe_emulator, "POST", "faults", {"event_delay": 5})
    assert delayed.status == 200 and delayed.body["event_delay"] == 5
    assert stripe_emulator.account.events.visibility_delay == 5


def test_sdk_retries_recover_from_faults(
    stripe_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No back-off sleeps: only the SDK's waiting is shortened, HTTP is real.
    monkeypatch.setattr(stripe._http_client.HTTPClient, "INITIAL_DELAY", 0.0)
    monkeypatch.setattr(stripe._http_client.HTTPClient, "MAX_DELAY", 0.0)
    stripe_emulator.account.faults.configure(error_rate=0.3, drop_rate=0.2, seed=7)
    client = sdk(stripe_emulator, retries=10)
    made = [client.v1.coupons.create(params={"id": f"R{n}", "percent_off": 5}).id for n in range(5)]
    # The SDK's automatic Idempotency-Key makes retried POSTs safe: no duplicates.
    assert sorted(stripe_emulator.account.state("coupon")) == sorted(made)


def test_idempotency_key_replays_a_post(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    key = f"idem-{uuid.uuid4()}"
    first = client.v1.coupons.create(params={"percent_off": 5}, options={"idempotency_key": key})
    second = client.v1.coupons.create(params={"percent_off": 5}, options={"idempotency_key": key})
    assert second.id == first.id and plain(second) == plain(first)
    assert second.last_response is not None
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(stripe_emulator.account.state("coupon")) == 1
    assert len(client.v1.events.list().data) == 1

    # Errors are replayed too, and a fresh key makes a fresh request.
    bad_key = f"idem-{uuid.uuid4()}"
    headers = {"Idempotency-Key": bad_key}
    failed = raw(stripe_emulator, "POST", "/v1/coupons", {"id": "X"}, headers=headers)
    replay = raw(stripe_emulator, "POST", "/v1/coupons", {"id": "X"}, headers=headers)
    assert failed.status == replay.status == 400 and failed.body == replay.body
    assert replay.headers["Idempotent-Replayed"] == "true"
    fresh = client.v1.coupons.create(params={"percent_off": 5})
    assert fresh.id != first.id
    # GETs are never replayed.
    listed = raw(stripe_emulator, "GET", "/v1/coupons", headers={"Idempotency-Key": key})
    assert len(listed.body["data"]) == 2 and "Idempotent-Replayed" not in listed.headers
