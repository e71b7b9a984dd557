"""API versions: responses follow Stripe-Version; events keep the version of their creation."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from stripe_emulator import StripeError as EmulatorError
from stripe_emulator.server import EmulatorServer
from tests.emulator.emulator_support import (
    CURRENT_VERSION,
    OLD_VERSION,
    assert_stripe_error,
    plain,
    raw,
    sdk,
)

CLOVER = "2025-09-30.clover"
BEFORE_CLOVER = "2025-08-27.basil"


def make_code(client: stripe.StripeClient) -> str:
    client.v1.coupons.create(params={"id": "V", "percent_off": 12.5, "name": "Twelve"})
    return client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": "V"}, "code": "VER"}
    ).id


@pytest.mark.parametrize(
    ("version", "embedded"),
    [
        ("2019-12-03", True),
        (OLD_VERSION, True),
        (BEFORE_CLOVER, True),
        (CLOVER, False),
        (CURRENT_VERSION, False),
    ],
)
def test_promotion_code_shape_follows_the_request_version(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer, version: str, embedded: bool
) -> None:
    code_id = make_code(client)
    versioned = sdk(stripe_emulator, version=version)
    body = plain(versioned.v1.promotion_codes.retrieve(code_id))
    listed = plain(versioned.v1.promotion_codes.list()).get("data")
    assert listed == [body]
    coupon = plain(versioned.v1.coupons.retrieve("V"))
    if embedded:
        assert body["coupon"] == coupon
        assert "promotion" not in body and "customer_account" not in body
    else:
        assert body["promotion"] == {"type": "coupon", "coupon": "V"}
        assert "coupon" not in body and body["customer_account"] is None
    response = raw(stripe_emulator, "GET", f"/v1/promotion_codes/{code_id}", version=version)
    assert response.body == body
    assert response.headers["Stripe-Version"] == version


def test_coupons_and_products_read_the_same_in_every_version(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    client.v1.coupons.create(params={"id": "SAME", "amount_off": 100, "currency": "jpy"})
    product = client.v1.products.create(params={"name": "Same"})
    old = sdk(stripe_emulator, version=OLD_VERSION)
    assert plain(old.v1.coupons.retrieve("SAME")) == plain(client.v1.coupons.retrieve("SAME"))
    assert plain(old.v1.products.retrieve(product.id)) == plain(
        client.v1.products.retrieve(product.id)
    )


def test_account_version_is_the_default_without_a_header(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    code_id = make_code(client)
    plain_request = raw(stripe_emulator, "GET", f"/v1/promotion_codes/{code_id}")
    assert "promotion" in plain_request.body
    assert plain_request.headers["Stripe-Version"] == CURRENT_VERSION

    stripe_emulator.account.set_api_version(OLD_VERSION)
    assert stripe_emulator.account.api_version == OLD_VERSION
    now_old = raw(stripe_emulator, "GET", f"/v1/promotion_codes/{code_id}")
    assert now_old.body["coupon"]["id"] == "V" and "promotion" not in now_old.body
    assert now_old.headers["Stripe-Version"] == OLD_VERSION
    # The SDK always sends its own pinned version, which wins over the account's.
    assert "promotion" in plain(client.v1.promotion_codes.retrieve(code_id))


def test_events_render_in_the_account_version_at_creation(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    account = stripe_emulator.account
    account.clock.freeze()
    account.set_api_version(OLD_VERSION)
    client.v1.coupons.create(params={"id": "EVV", "percent_off": 10})
    code = client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": "EVV"}, "code": "MIXED"}
    )
    account.advance_clock(1)
    account.set_api_version(CURRENT_VERSION)
    client.v1.promotion_codes.update(code.id, params={"metadata": {"step": "2"}})

    def promo_events(client_: stripe.StripeClient) -> list[dict[str, Any]]:
        page = client_.v1.events.list(params={"type": "promotion_code.*"})
        return [plain(e) for e in page.data]

    for reader in (client, sdk(stripe_emulator, version=OLD_VERSION)):
        updated, created = promo_events(reader)
        assert created["type"] == "promotion_code.created"
        assert created["api_version"] == OLD_VERSION
        assert created["data"]["object"]["coupon"]["id"] == "EVV"
        assert "promotion" not in created["data"]["object"]
        assert updated["type"] == "promotion_code.updated"
        assert updated["api_version"] == CURRENT_VERSION
        assert updated["data"]["object"]["promotion"] == {"type": "coupon", "coupon": "EVV"}
        assert "coupon" not in updated["data"]["object"]
        assert updated["data"]["previous_attributes"] == {"metadata": {}}
        single = plain(reader.v1.events.retrieve(created["id"]))
        assert single == created


@pytest.mark.parametrize(
    "version", ["garbage", "2024-13-45", "2024-02-30", "20240620", "2024-06-20.Acacia", "latest"]
)
def test_invalid_stripe_version_is_400(stripe_emulator: EmulatorServer, version: str) -> None:
    result = raw(stripe_emulator, "GET", "/v1/coupons", version=version)
    error = assert_stripe_error(result, 400, param="Stripe-Version")
    assert version in error["message"]
    with pytest.raises(stripe.InvalidRequestError) as raised:
        sdk(stripe_emulator, version=version).v1.coupons.list()
    assert raised.value.http_status == 400
    with pytest.raises(EmulatorError):
        stripe_emulator.account.set_api_version(version)
