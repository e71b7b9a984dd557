"""Coupons: create, retrieve, update, delete, and `valid` by `redeem_by` and `max_redemptions`."""

from __future__ import annotations

from typing import Any, cast

import pytest
import stripe

from stripe_emulator import StripeError as EmulatorError
from stripe_emulator.server import EmulatorServer
from tests.emulator.emulator_support import (
    OLD_VERSION,
    assert_stripe_error,
    raw,
    sdk,
    sdk_error_body,
)


def test_create_with_generated_id_then_retrieve(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    now = stripe_emulator.account.clock.timestamp()
    coupon = client.v1.coupons.create(params={"percent_off": 25.5, "duration": "forever"})

    assert isinstance(coupon, stripe.Coupon)
    assert coupon.id and coupon.id.isalnum()
    assert coupon.object == "coupon"
    assert coupon.percent_off == 25.5
    assert coupon.amount_off is None and coupon.currency is None
    assert coupon.duration == "forever" and coupon.duration_in_months is None
    assert abs(coupon.created - now) <= 2
    assert coupon.times_redeemed == 0 and coupon.valid is True
    assert coupon.to_dict()["metadata"] == {} and coupon.name is None
    assert coupon.livemode is False

    again = client.v1.coupons.retrieve(coupon.id)
    assert again.to_dict() == coupon.to_dict()
    other = client.v1.coupons.create(params={"percent_off": 10})
    assert other.id != coupon.id
    assert other.duration == "once"  # Stripe's default duration


def test_create_with_given_id_and_every_field(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "Hoodie"})
    redeem_by = int(client.v1.products.retrieve(product.id).created) + 3600
    coupon = client.v1.coupons.create(
        params={
            "id": "SUMMER-25_x",
            "amount_off": 500,
            "currency": "USD",
            "duration": "repeating",
            "duration_in_months": 3,
            "max_redemptions": 10,
            "redeem_by": redeem_by,
            "name": "Summer sale",
            "metadata": {"campaign": "summer", "order_id": "6735"},
            "applies_to": {"products": [product.id]},
            "currency_options": {"eur": {"amount_off": 450}, "jpy": {"amount_off": 800}},
        }
    )
    assert coupon.id == "SUMMER-25_x"
    assert coupon.amount_off == 500 and coupon.currency == "usd"
    assert coupon.percent_off is None
    assert coupon.duration == "repeating" and coupon.duration_in_months == 3
    assert coupon.max_redemptions == 10 and coupon.redeem_by == redeem_by
    assert coupon.name == "Summer sale"
    assert coupon.to_dict()["metadata"] == {"campaign": "summer", "order_id": "6735"}
    # Expandable fields stay absent unless asked for.
    assert "applies_to" not in coupon.to_dict() and "currency_options" not in coupon.to_dict()

    expanded = client.v1.coupons.retrieve(
        "SUMMER-25_x", params={"expand": ["applies_to", "currency_options"]}
    ).to_dict()
    assert expanded["applies_to"] == {"products": [product.id]}
    assert expanded["currency_options"]["eur"] == {"amount_off": 450}
    assert expanded["currency_options"]["jpy"] == {"amount_off": 800}
    assert expanded["currency_options"]["usd"] == {"amount_off": 500}


def test_duplicate_id_is_rejected(stripe_emulator: EmulatorServer) -> None:
    assert (
        raw(stripe_emulator, "POST", "/v1/coupons", {"id": "DUP", "percent_off": 5}).status == 200
    )
    result = raw(stripe_emulator, "POST", "/v1/coupons", {"id": "DUP", "percent_off": 7})
    assert_stripe_error(result, 400, code="resource_already_exists", param="id")
    assert len(stripe_emulator.account.state("coupon")) == 1


@pytest.mark.parametrize(
    ("params", "code", "param"),
    [
        ({"percent_off": 10, "amount_off": 100, "currency": "usd"}, "parameter_invalid", None),
        ({"duration": "once"}, "parameter_invalid", None),
        ({"amount_off": 100}, "parameter_invalid", "currency"),
        ({"percent_off": 10, "currency": "usd"}, "parameter_invalid", "currency"),
        ({"percent_off": 10, "duration": "repeating"}, "parameter_missing", "duration_in_months"),
        (
            {"percent_off": 10, "duration": "forever", "duration_in_months": 3},
            "parameter_invalid",
            "duration_in_months",
        ),
        ({"percent_off": 0}, "parameter_invalid", "percent_off"),
        ({"percent_off": 100.5}, "parameter_invalid", "percent_off"),
        ({"percent_off": "lots"}, "parameter_invalid", "percent_off"),
        ({"amount_off": 0, "currency": "usd"}, "parameter_invalid", "amount_off"),
        ({"percent_off": 10, "duration": "weekly"}, "parameter_invalid", "duration"),
        ({"percent_off": 10, "redeem_by": 1000}, "parameter_invalid", "redeem_by"),
        ({"percent_off": 10, "max_redemptions": 0}, "parameter_invalid", "max_redemptions"),
        (
            {"percent_off": 10, "currency_options[eur][amount_off]": 5},
            "parameter_invalid",
            "currency_options",
        ),
        ({"percent_off": 10, "id": "has space"}, "parameter_invalid", "id"),
        ({"percent_off": 10, "name": "x" * 41}, "parameter_invalid", "name"),
        ({"percent_off": 10, "valid": "true"}, "parameter_unknown", "valid"),
    ],
)
def test_invalid_create_is_rejected(
    stripe_emulator: EmulatorServer,
    params: dict[str, str | int | float],
    code: str,
    param: str | None,
) -> None:
    result = raw(stripe_emulator, "POST", "/v1/coupons", params)
    assert result.status == 400, result.body
    error = result.error
    assert error["type"] == "invalid_request_error" and error["code"] == code
    if param is not None:
        assert error["param"] == param
    else:  # exactly one of percent_off / amount_off: Stripe names one of them
        assert error["param"] in ("percent_off", "amount_off")
    assert stripe_emulator.account.state("coupon") == {}
    assert stripe_emulator.account.events.records == {}


def test_applies_to_an_unknown_product_is_404(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.coupons.create(
            params={"percent_off": 10, "applies_to": {"products": ["prod_missing"]}}
        )
    assert raised.value.http_status == 404
    assert raised.value.code == "resource_missing"
    assert raised.value.param == "applies_to[products]"


def test_update_name_metadata_and_currency_options(client: stripe.StripeClient) -> None:
    coupon = client.v1.coupons.create(
        params={
            "id": "TENOFF",
            "amount_off": 1000,
            "currency": "usd",
            "name": "Ten off",
            "metadata": {"keep": "1", "drop": "2"},
        }
    )
    updated = client.v1.coupons.update(
        coupon.id,
        params={
            "name": "Ten dollars off",
            "metadata": {"drop": "", "new": "3"},
            "currency_options": {"eur": {"amount_off": 900}},
        },
    )
    assert updated.name == "Ten dollars off"
    assert updated.to_dict()["metadata"] == {"keep": "1", "new": "3"}
    assert updated.amount_off == 1000 and updated.created == coupon.created

    fetched = client.v1.coupons.retrieve(coupon.id, params={"expand": ["currency_options"]})
    assert fetched.name == "Ten dollars off"
    assert fetched.to_dict()["currency_options"] == {
        "eur": {"amount_off": 900},
        "usd": {"amount_off": 1000},
    }

    percent = client.v1.coupons.create(params={"percent_off": 10})
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.coupons.update(
            percent.id, params={"currency_options": {"eur": {"amount_off": 5}}}
        )
    assert raised.value.param == "currency_options"

    cleared = client.v1.coupons.update(coupon.id, params={"metadata": "", "name": ""})
    assert cleared.to_dict()["metadata"] == {} and cleared.name is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("percent_off", "50"),
        ("amount_off", "200"),
        ("currency", "eur"),
        ("duration", "forever"),
        ("duration_in_months", "2"),
        ("max_redemptions", "5"),
        ("redeem_by", "4102444800"),
        ("applies_to[products][0]", "prod_x"),
        ("id", "OTHER"),
    ],
)
def test_update_of_other_fields_is_rejected(
    stripe_emulator: EmulatorServer, name: str, value: str
) -> None:
    assert (
        raw(
            stripe_emulator,
            "POST",
            "/v1/coupons",
            {"id": "C1", "amount_off": 100, "currency": "usd"},
        ).status
        == 200
    )
    before = raw(stripe_emulator, "GET", "/v1/coupons/C1").body
    result = raw(stripe_emulator, "POST", "/v1/coupons/C1", {name: value})
    assert_stripe_error(result, 400, code="parameter_unknown", param=name.split("[")[0])
    assert raw(stripe_emulator, "GET", "/v1/coupons/C1").body == before


def test_update_unknown_coupon_is_404(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.coupons.update("NOPE", params={"name": "x"})
    assert raised.value.http_status == 404
    assert sdk_error_body(raised.value) == {
        "type": "invalid_request_error",
        "code": "resource_missing",
        "param": "id",
        "message": "No such coupon: 'NOPE'",
    }


def test_delete_then_gone(client: stripe.StripeClient, stripe_emulator: EmulatorServer) -> None:
    client.v1.coupons.create(params={"id": "BYE", "percent_off": 15})
    kept = client.v1.coupons.create(params={"id": "STAY", "percent_off": 15})

    deleted = client.v1.coupons.delete("BYE")
    assert deleted.to_dict() == {"id": "BYE", "object": "coupon", "deleted": True}
    raw_deleted = raw(stripe_emulator, "DELETE", "/v1/coupons/STAY")
    assert raw_deleted.status == 200
    assert raw_deleted.body == {"id": "STAY", "object": "coupon", "deleted": True}

    for coupon_id in ("BYE", "STAY"):
        for method in ("GET", "POST", "DELETE"):
            params = {"name": "x"} if method == "POST" else None
            result = raw(stripe_emulator, method, f"/v1/coupons/{coupon_id}", params)
            assert_stripe_error(result, 404, code="resource_missing", param="id")
        with pytest.raises(stripe.InvalidRequestError) as raised:
            client.v1.coupons.retrieve(coupon_id)
        assert raised.value.http_status == 404
    assert client.v1.coupons.list().data == []
    assert kept.id not in stripe_emulator.account.state("coupon")


def test_valid_turns_false_when_redeem_by_passes(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    account = stripe_emulator.account
    account.clock.freeze()
    now = account.clock.timestamp()
    client.v1.coupons.create(params={"id": "SOON", "percent_off": 20, "redeem_by": now + 100})
    promo = client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": "SOON"}, "code": "SOON20"}
    )
    assert client.v1.coupons.retrieve("SOON").valid is True

    account.advance_clock(99)
    assert client.v1.coupons.retrieve("SOON").valid is True
    assert client.v1.promotion_codes.retrieve(promo.id).active is True

    account.advance_clock(1)
    assert client.v1.coupons.retrieve("SOON").valid is False
    assert [c.valid for c in client.v1.coupons.list().data] == [False]
    assert client.v1.promotion_codes.retrieve(promo.id).active is False
    # An invalid coupon takes no new promotion codes.
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": "SOON"}})
    assert raised.value.http_status == 400


def test_valid_turns_false_when_max_redemptions_is_reached(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    account = stripe_emulator.account
    client.v1.coupons.create(params={"id": "TWICE", "percent_off": 20, "max_redemptions": 2})
    promo = sdk(stripe_emulator, version=OLD_VERSION).v1.promotion_codes.create(
        params=cast(Any, {"coupon": "TWICE"})
    )
    account.redeem(promo.id)
    first = client.v1.coupons.retrieve("TWICE")
    assert first.times_redeemed == 1 and first.valid is True

    redeemed = account.redeem(promo.id)
    assert redeemed["times_redeemed"] == 2
    second = client.v1.coupons.retrieve("TWICE")
    assert second.times_redeemed == 2 and second.valid is False
    code = client.v1.promotion_codes.retrieve(promo.id)
    assert code.active is False and code.times_redeemed == 2
    with pytest.raises(EmulatorError, match="not active"):
        account.redeem(promo.id)
    assert client.v1.coupons.retrieve("TWICE").times_redeemed == 2
