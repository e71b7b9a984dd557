"""Promotion codes: both create shapes, codes, uniqueness, fields, update, no delete, filters."""

from __future__ import annotations

from typing import Any, cast

import pytest
import stripe

from stripe_emulator.server import EmulatorServer
from tests.emulator.emulator_support import OLD_VERSION, assert_stripe_error, ids, plain, raw, sdk


def promo(client: stripe.StripeClient, coupon: str, **extra: Any) -> dict[str, Any]:
    """Create a code on the current API version; the response as a dict."""
    params = {"promotion": {"type": "coupon", "coupon": coupon}, **extra}
    created: dict[str, Any] = plain(client.v1.promotion_codes.create(params=cast(Any, params)))
    return created


@pytest.fixture
def coupon(client: stripe.StripeClient) -> str:
    return client.v1.coupons.create(params={"id": "SAVE", "percent_off": 10}).id


def test_create_with_coupon_on_an_older_version(
    stripe_emulator: EmulatorServer, coupon: str
) -> None:
    old = sdk(stripe_emulator, version=OLD_VERSION)
    created = old.v1.promotion_codes.create(params=cast(Any, {"coupon": coupon, "code": "OLD1"}))
    body = plain(created)
    assert isinstance(created, stripe.PromotionCode)
    assert body["id"].startswith("promo_") and body["code"] == "OLD1"
    assert body["coupon"] == plain(old.v1.coupons.retrieve(coupon))
    assert "promotion" not in body and "customer_account" not in body
    assert created.last_response is not None
    assert created.last_response.headers["Stripe-Version"] == OLD_VERSION

    # The current version has no `coupon` parameter and needs `promotion`.
    result = raw(stripe_emulator, "POST", "/v1/promotion_codes", {"coupon": coupon})
    assert_stripe_error(result, 400, code="parameter_unknown", param="coupon")
    missing = raw(stripe_emulator, "POST", "/v1/promotion_codes", {}, version=OLD_VERSION)
    assert_stripe_error(missing, 400, code="parameter_missing", param="coupon")


def test_create_with_promotion_on_the_current_version(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer, coupon: str
) -> None:
    body = promo(client, coupon, code="NEW1")
    assert body["promotion"] == {"type": "coupon", "coupon": coupon}
    assert "coupon" not in body and body["customer_account"] is None
    assert body["active"] is True and body["times_redeemed"] == 0
    assert body["restrictions"] == {
        "first_time_transaction": False,
        "minimum_amount": None,
        "minimum_amount_currency": None,
    }
    fetched = client.v1.promotion_codes.retrieve(body["id"])
    assert plain(fetched) == body

    no_coupon = raw(stripe_emulator, "POST", "/v1/promotion_codes", {"promotion[type]": "coupon"})
    assert_stripe_error(no_coupon, 400, code="parameter_missing", param="promotion[coupon]")
    unknown = raw(
        stripe_emulator,
        "POST",
        "/v1/promotion_codes",
        {"promotion[type]": "coupon", "promotion[coupon]": "GHOST"},
    )
    assert_stripe_error(unknown, 404, code="resource_missing", param="promotion[coupon]")


def test_code_is_generated_when_blank(client: stripe.StripeClient, coupon: str) -> None:
    generated = [promo(client, coupon)["code"], promo(client, coupon, code="")["code"]]
    for code in generated:
        assert code and code.isalnum() and len(code) >= 6
    assert generated[0] != generated[1]


@pytest.mark.parametrize("code", ["SUMMER 20", "a_b", "50%OFF", "ÉTÉ", "x" * 501])
def test_invalid_characters_are_rejected(
    stripe_emulator: EmulatorServer, coupon: str, code: str
) -> None:
    result = raw(
        stripe_emulator,
        "POST",
        "/v1/promotion_codes",
        {"promotion[type]": "coupon", "promotion[coupon]": coupon, "code": code},
    )
    assert_stripe_error(result, 400, code="parameter_invalid", param="code")
    assert stripe_emulator.account.state("promotion_code") == {}


def test_code_is_unique_case_insensitively_among_active_codes_per_customer(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer, coupon: str
) -> None:
    first = promo(client, coupon, code="Save10")
    for attempt in ("SAVE10", "save10", "Save10"):
        with pytest.raises(stripe.InvalidRequestError) as raised:
            promo(client, coupon, code=attempt)
        assert raised.value.http_status == 400
        assert raised.value.code == "resource_already_exists" and raised.value.param == "code"

    # Per customer: each customer may have its own SAVE10 once.
    alice = promo(client, coupon, code="save10", customer="cus_alice")
    bob = promo(client, coupon, code="SAVE10", customer="cus_bob")
    assert alice["customer"] == "cus_alice" and bob["customer"] == "cus_bob"
    with pytest.raises(stripe.InvalidRequestError):
        promo(client, coupon, code="SaVe10", customer="cus_alice")

    # An inactive code blocks nothing; reactivating a duplicate is refused.
    parked = promo(client, coupon, code="SAVE10", active=False)
    assert parked["active"] is False
    client.v1.promotion_codes.update(first["id"], params={"active": False})
    reused = promo(client, coupon, code="save10")
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.promotion_codes.update(parked["id"], params={"active": True})
    assert raised.value.code == "resource_already_exists"
    assert client.v1.promotion_codes.retrieve(parked["id"]).active is False

    # A code whose coupon turned invalid is inactive, so it blocks nothing either.
    account = stripe_emulator.account
    account.clock.freeze()
    client.v1.coupons.create(
        params={"id": "BRIEF", "percent_off": 5, "redeem_by": account.clock.timestamp() + 10}
    )
    promo(client, "BRIEF", code="FLASH")
    account.advance_clock(10)
    assert promo(client, coupon, code="flash")["active"] is True
    active = client.v1.promotion_codes.list(params={"code": "save10", "active": True}).data
    assert ids(active) == [reused["id"], bob["id"], alice["id"]]


def test_create_with_every_field(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    now = stripe_emulator.account.clock.timestamp()
    client.v1.coupons.create(
        params={"id": "AMT", "amount_off": 500, "currency": "eur", "redeem_by": now + 7200}
    )
    body = promo(
        client,
        "AMT",
        code="VIP-2024",
        customer="cus_123",
        expires_at=now + 3600,
        max_redemptions=5,
        metadata={"channel": "email"},
        restrictions={
            "first_time_transaction": True,
            "minimum_amount": 2000,
            "minimum_amount_currency": "EUR",
            "currency_options": {"usd": {"minimum_amount": 2500}},
        },
        expand=["restrictions.currency_options"],
    )
    assert body["code"] == "VIP-2024" and body["customer"] == "cus_123"
    assert body["expires_at"] == now + 3600 and body["max_redemptions"] == 5
    assert body["metadata"] == {"channel": "email"}
    assert body["restrictions"] == {
        "first_time_transaction": True,
        "minimum_amount": 2000,
        "minimum_amount_currency": "eur",
        "currency_options": {"usd": {"minimum_amount": 2500}},
    }
    fetched = plain(client.v1.promotion_codes.retrieve(body["id"]))
    restrictions = {k: v for k, v in body["restrictions"].items() if k != "currency_options"}
    assert fetched == {**body, "restrictions": restrictions}


@pytest.mark.parametrize(
    ("extra", "code", "param"),
    [
        ({"expires_at": "1000"}, "parameter_invalid", "expires_at"),
        ({"expires_at": "9999999999"}, "parameter_invalid", "expires_at"),
        ({"max_redemptions": "0"}, "parameter_invalid", "max_redemptions"),
        ({"restrictions[minimum_amount]": "100"}, "parameter_invalid", None),
        ({"restrictions[bogus]": "1"}, "parameter_unknown", "restrictions[bogus]"),
        ({"active": "yes"}, "parameter_invalid", "active"),
        ({"promotion[type]": "gift"}, "parameter_invalid", "promotion[type]"),
    ],
)
def test_invalid_create_is_rejected(
    client: stripe.StripeClient,
    stripe_emulator: EmulatorServer,
    extra: dict[str, str],
    code: str,
    param: str | None,
) -> None:
    redeem_by = stripe_emulator.account.clock.timestamp() + 86400
    client.v1.coupons.create(params={"id": "C", "percent_off": 5, "redeem_by": redeem_by})
    params = {"promotion[type]": "coupon", "promotion[coupon]": "C", **extra}
    result = raw(stripe_emulator, "POST", "/v1/promotion_codes", params)
    assert result.status == 400, result.body
    assert result.error["code"] == code
    if param is not None:
        assert result.error["param"] == param
    assert stripe_emulator.account.state("promotion_code") == {}


def test_update_active_metadata_and_restrictions_only(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer, coupon: str
) -> None:
    body = promo(client, coupon, code="EDIT", metadata={"a": "1", "b": "2"})
    updated = plain(
        client.v1.promotion_codes.update(
            body["id"],
            params={
                "active": False,
                "metadata": {"a": "", "c": "3"},
                "restrictions": {"currency_options": {"gbp": {"minimum_amount": 900}}},
                "expand": ["restrictions.currency_options"],
            },
        )
    )
    assert updated["active"] is False
    assert updated["metadata"] == {"b": "2", "c": "3"}
    assert updated["restrictions"]["currency_options"] == {"gbp": {"minimum_amount": 900}}
    assert client.v1.promotion_codes.retrieve(body["id"]).active is False
    again = client.v1.promotion_codes.update(body["id"], params={"active": True})
    assert again.active is True

    for name, value in [
        ("code", "OTHER"),
        ("coupon", "SAVE"),
        ("customer", "cus_1"),
        ("expires_at", "4102444800"),
        ("max_redemptions", "3"),
        ("promotion[coupon]", "SAVE"),
        ("restrictions[minimum_amount]", "100"),
        ("restrictions[first_time_transaction]", "true"),
    ]:
        result = raw(stripe_emulator, "POST", f"/v1/promotion_codes/{body['id']}", {name: value})
        expected = name if name.startswith("restrictions") else name.split("[")[0]
        assert_stripe_error(result, 400, code="parameter_unknown", param=expected)
    assert plain(client.v1.promotion_codes.retrieve(body["id"])) == plain(again)


def test_there_is_no_delete(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer, coupon: str
) -> None:
    body = promo(client, coupon, code="KEEP")
    result = raw(stripe_emulator, "DELETE", f"/v1/promotion_codes/{body['id']}")
    error = assert_stripe_error(result, 404)
    assert error["message"].startswith("Unrecognized request URL (DELETE: /v1/promotion_codes/")
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.raw_request("delete", f"/v1/promotion_codes/{body['id']}")
    assert raised.value.http_status == 404
    assert client.v1.promotion_codes.retrieve(body["id"]).active is True
    kinds = [e.type for e in client.v1.events.list().data]
    assert kinds == ["promotion_code.created", "coupon.created"]


def test_retrieve_unknown_is_404(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.promotion_codes.retrieve("promo_missing")
    assert raised.value.http_status == 404 and raised.value.code == "resource_missing"


def test_active_only_while_the_coupon_is_valid(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer, coupon: str
) -> None:
    account = stripe_emulator.account
    account.clock.freeze()
    now = account.clock.timestamp()
    client.v1.coupons.create(params={"id": "SHORT", "percent_off": 5, "redeem_by": now + 60})
    expiring = promo(client, "SHORT", code="SHORT5")
    doomed = promo(client, coupon, code="DOOMED")
    assert expiring["active"] and doomed["active"]

    account.advance_clock(60)
    client.v1.coupons.delete(coupon)
    assert client.v1.promotion_codes.retrieve(expiring["id"]).active is False
    assert client.v1.promotion_codes.retrieve(doomed["id"]).active is False
    assert client.v1.promotion_codes.list(params={"active": True}).data == []
    assert len(client.v1.promotion_codes.list(params={"active": False}).data) == 2
    # It cannot be switched back on while its coupon is invalid.
    client.v1.promotion_codes.update(expiring["id"], params={"active": False})
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.promotion_codes.update(expiring["id"], params={"active": True})
    assert raised.value.http_status == 400


def test_list_filters(client: stripe.StripeClient, coupon: str) -> None:
    client.v1.coupons.create(params={"id": "OTHER", "amount_off": 100, "currency": "usd"})
    a = promo(client, coupon, code="Alpha")["id"]
    b = promo(client, "OTHER", code="alpha", customer="cus_1")["id"]
    c = promo(client, coupon, code="Beta", customer="cus_1", active=False)["id"]
    d = promo(client, "OTHER", code="GAMMA")["id"]

    def listed(params: dict[str, Any]) -> list[str]:
        return ids(client.v1.promotion_codes.list(params=cast(Any, params)).data)

    assert listed({}) == [d, c, b, a]
    assert listed({"active": True}) == [d, b, a]
    assert listed({"active": False}) == [c]
    assert listed({"code": "ALPHA"}) == [b, a]
    assert listed({"code": "beta"}) == [c]
    assert listed({"code": "nope"}) == []
    assert listed({"coupon": coupon}) == [c, a]
    assert listed({"coupon": "OTHER"}) == [d, b]
    assert listed({"customer": "cus_1"}) == [c, b]
    assert listed({"customer": "cus_1", "active": True, "code": "alpha"}) == [b]
    assert listed({"coupon": "OTHER", "limit": 1}) == [d]
