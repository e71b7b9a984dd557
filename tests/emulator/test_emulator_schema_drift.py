"""Schema drift on demand: fields Stripe adds (or retypes), and the count of injected faults."""

from __future__ import annotations

import pytest
import stripe

from stripe_emulator.server import EmulatorServer
from tests.emulator.emulator_support import control, plain


def test_extra_fields_appear_in_lists_retrieves_events_and_state(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    account = stripe_emulator.account
    client.v1.coupons.create(params={"id": "BEFORE", "percent_off": 5})
    account.set_extra_fields("coupon", {"loyalty_tier": 3, "rules": {"stack": False}})

    listed = plain(client.v1.coupons.list())["data"][0]
    assert listed["loyalty_tier"] == 3 and listed["rules"] == {"stack": False}
    assert plain(client.v1.coupons.retrieve("BEFORE"))["loyalty_tier"] == 3
    client.v1.coupons.update("BEFORE", params={"name": "Renamed"})
    event = plain(client.v1.events.list(params={"type": "coupon.updated"}))["data"][0]
    assert event["data"]["object"]["loyalty_tier"] == 3
    assert account.state("coupon")["BEFORE"]["rules"] == {"stack": False}
    # Other kinds are untouched; the created event from before the change has no such field.
    product = plain(client.v1.products.create(params={"name": "Mug"}))
    assert "loyalty_tier" not in product
    created = plain(client.v1.events.list(params={"type": "coupon.created"}))["data"][0]
    assert "loyalty_tier" not in created["data"]["object"]

    # A type change, then the field goes away again; a rendered value is never shared.
    account.set_extra_fields("coupon", {"loyalty_tier": "gold"})
    assert plain(client.v1.coupons.retrieve("BEFORE"))["loyalty_tier"] == "gold"
    account.state("coupon")["BEFORE"]["loyalty_tier"] = "mutated"
    assert account.state("coupon")["BEFORE"]["loyalty_tier"] == "gold"
    account.set_extra_fields("coupon", {})
    assert "loyalty_tier" not in plain(client.v1.coupons.retrieve("BEFORE"))


def test_extra_fields_control_and_reset(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    code_fields = {"kind": "promotion_code", "fields": {"channel": "partner"}}
    answer = control(stripe_emulator, "POST", "extra_fields", code_fields)
    assert answer.status == 200
    assert answer.body == {"extra_fields": {"promotion_code": {"channel": "partner"}}}
    coupon = client.v1.coupons.create(params={"percent_off": 5})
    code = client.v1.promotion_codes.create(
        params={"code": "X1", "promotion": {"type": "coupon", "coupon": coupon.id}}
    )
    assert plain(code)["channel"] == "partner"
    assert control(stripe_emulator, "POST", "extra_fields", {"kind": "invoice"}).status == 400
    assert control(stripe_emulator, "POST", "extra_fields", {"kind": "event"}).status == 400
    bad = {"kind": "coupon", "fields": [1]}
    assert control(stripe_emulator, "POST", "extra_fields", bad).status == 400
    control(stripe_emulator, "POST", "reset")
    assert stripe_emulator.account.extra_fields == {}


def test_injected_faults_are_counted_by_outcome(stripe_emulator: EmulatorServer) -> None:
    faults = stripe_emulator.account.faults
    faults.configure(error_rate=1.0)
    client = stripe.StripeClient(
        "sk_test_countingKey0001",
        base_addresses={"api": stripe_emulator.url},
        max_network_retries=0,
    )
    for _ in range(3):
        with pytest.raises(stripe.APIError):
            client.v1.coupons.list()
    faults.configure(error_rate=0.0, drop_rate=1.0)
    with pytest.raises(stripe.APIConnectionError):
        client.v1.coupons.list()
    assert faults.injected() == {"server_error": 3, "drop": 1}
    body = control(stripe_emulator, "POST", "faults", {"drop_rate": 0}).body
    assert body["injected"] == {"server_error": 3, "drop": 1}
    faults.reset()
    assert faults.injected() == {}
