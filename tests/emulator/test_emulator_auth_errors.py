"""API keys (Bearer and Basic, restricted and revoked) and Stripe's error shape."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
import requests
import stripe

from stripe_emulator.server import EmulatorServer
from tests.emulator.emulator_support import (
    TEST_KEY,
    assert_stripe_error,
    control,
    raw,
    sdk,
    sdk_error_body,
)

SECRET = "sk_test_51Hs3cr3tKeyValue0123456789abcdef"


def test_no_key_is_401(stripe_emulator: EmulatorServer) -> None:
    for method, path in [("GET", "/v1/coupons"), ("POST", "/v1/products"), ("GET", "/v1/x")]:
        result = raw(stripe_emulator, method, path, key=None)
        error = assert_stripe_error(result, 401)
        assert "API key" in error["message"]
    empty_bearer = raw(
        stripe_emulator, "GET", "/v1/coupons", key=None, headers={"Authorization": "Bearer "}
    )
    assert_stripe_error(empty_bearer, 401)


@pytest.mark.parametrize(
    "key",
    [
        "sk_test_short",
        "pk_test_51Hs3cr3tKeyValue0123456789",
        "sk_prod_51Hs3cr3tKeyValue0123456789",
        "sk_test_51Hs3cr3t-Key/Value0123456789",
        "not-a-key-at-all-0123456789",
        "abc",
    ],
)
def test_malformed_key_is_401_and_never_echoed(stripe_emulator: EmulatorServer, key: str) -> None:
    with pytest.raises(stripe.AuthenticationError) as raised:
        sdk(stripe_emulator, key=key).v1.coupons.list()
    assert raised.value.http_status == 401
    body = sdk_error_body(raised.value)
    assert body["type"] == "invalid_request_error"
    assert key not in body["message"] and key not in str(raised.value)
    result = raw(stripe_emulator, "POST", "/v1/coupons", {"percent_off": 5}, key=key)
    assert_stripe_error(result, 401)
    assert key not in result.body["error"]["message"]
    assert stripe_emulator.account.state("coupon") == {}


@pytest.mark.parametrize(
    "key",
    [
        "sk_test_51Hs3cr3tKeyValue0123456789",
        "sk_live_51Hs3cr3tKeyValue0123456789",
        "rk_test_51Hs3cr3tKeyValue0123456789",
        "rk_live_51Hs3cr3tKeyValue0123456789",
    ],
)
def test_every_key_kind_works(stripe_emulator: EmulatorServer, key: str) -> None:
    client = sdk(stripe_emulator, key=key)
    coupon = client.v1.coupons.create(params={"percent_off": 5})
    assert client.v1.coupons.retrieve(coupon.id).id == coupon.id
    assert [c.id for c in client.v1.coupons.list().data] == [coupon.id]


def test_basic_auth_works(stripe_emulator: EmulatorServer) -> None:
    url = f"{stripe_emulator.url}/v1/coupons"
    created = requests.post(url, data={"percent_off": "5"}, auth=(SECRET, ""), timeout=10)
    assert created.status_code == 200 and created.json()["object"] == "coupon"
    listed = requests.get(url, auth=(SECRET, ""), timeout=10)
    assert listed.status_code == 200
    assert [c["id"] for c in listed.json()["data"]] == [created.json()["id"]]

    bad = requests.get(url, auth=("sk_test_bad", ""), timeout=10)
    assert bad.status_code == 401 and "sk_test_bad" not in bad.text
    garbage = requests.get(url, headers={"Authorization": "Basic %%%notbase64"}, timeout=10)
    assert garbage.status_code == 401
    no_user = base64.b64encode(b":password").decode()
    empty = requests.get(url, headers={"Authorization": f"Basic {no_user}"}, timeout=10)
    assert empty.status_code == 401


def test_read_only_key_can_read_but_not_write(stripe_emulator: EmulatorServer) -> None:
    writer = sdk(stripe_emulator, key=SECRET)
    coupon = writer.v1.coupons.create(params={"id": "RO", "percent_off": 5})
    restricted = "rk_test_51ReadOnlyKey0123456789abcdef"
    stripe_emulator.account.keys.set_access(restricted, "read_only")
    reader = sdk(stripe_emulator, key=restricted)

    assert reader.v1.coupons.retrieve("RO").id == coupon.id
    assert [c.id for c in reader.v1.coupons.list().data] == ["RO"]
    assert reader.v1.events.list().data[0].type == "coupon.created"
    writes: list[Callable[[], object]] = [
        lambda: reader.v1.coupons.create(params={"percent_off": 5}),
        lambda: reader.v1.coupons.update("RO", params={"name": "x"}),
        lambda: reader.v1.coupons.delete("RO"),
        lambda: reader.v1.products.create(params={"name": "x"}),
    ]
    for write in writes:
        with pytest.raises(stripe.PermissionError) as raised:
            write()
        assert raised.value.http_status == 403
        message = sdk_error_body(raised.value)["message"]
        assert restricted not in message and restricted[-4:] in message
    assert writer.v1.coupons.retrieve("RO").name is None
    assert len(stripe_emulator.account.state("coupon")) == 1
    # Other keys are unaffected.
    assert writer.v1.coupons.update("RO", params={"name": "ok"}).name == "ok"


def test_key_with_no_access_is_403_on_reads(stripe_emulator: EmulatorServer) -> None:
    key = "rk_live_51NoAccessKey0123456789abcdef"
    stripe_emulator.account.keys.set_access(key, "none")
    result = raw(stripe_emulator, "GET", "/v1/promotion_codes", key=key)
    error = assert_stripe_error(result, 403)
    assert key not in error["message"]
    with pytest.raises(stripe.PermissionError):
        sdk(stripe_emulator, key=key).v1.products.list()


def test_revoked_key_is_401(stripe_emulator: EmulatorServer) -> None:
    client = sdk(stripe_emulator, key=SECRET)
    client.v1.coupons.list()
    stripe_emulator.account.keys.set_access(SECRET, "revoked")
    with pytest.raises(stripe.AuthenticationError) as raised:
        client.v1.coupons.list()
    assert SECRET not in sdk_error_body(raised.value)["message"]
    assert sdk(stripe_emulator).v1.coupons.list().data == []


def test_key_access_over_http_and_reset(stripe_emulator: EmulatorServer) -> None:
    assert (
        control(stripe_emulator, "POST", "keys", {"key": SECRET, "access": "read_only"}).status
        == 200
    )
    assert raw(stripe_emulator, "POST", "/v1/coupons", {"percent_off": 5}, key=SECRET).status == 403
    assert raw(stripe_emulator, "GET", "/v1/coupons", key=SECRET).status == 200
    bad = control(stripe_emulator, "POST", "keys", {"key": SECRET, "access": "admin"})
    assert bad.status == 400
    assert control(stripe_emulator, "POST", "reset").status == 200
    assert raw(stripe_emulator, "POST", "/v1/coupons", {"percent_off": 5}, key=SECRET).status == 200


@pytest.mark.parametrize(
    ("method", "path", "params", "status", "code", "param"),
    [
        ("GET", "/v1/coupons/NOPE", {}, 404, "resource_missing", "id"),
        ("GET", "/v1/products/prod_nope", {}, 404, "resource_missing", "id"),
        ("GET", "/v1/promotion_codes/promo_nope", {}, 404, "resource_missing", "id"),
        ("GET", "/v1/events/evt_nope", {}, 404, "resource_missing", "id"),
        ("DELETE", "/v1/products/prod_nope", {}, 404, "resource_missing", "id"),
        ("GET", "/v1/coupons", {"colour": "red"}, 400, "parameter_unknown", "colour"),
        ("GET", "/v1/coupons", {"limit": "x"}, 400, "parameter_invalid", "limit"),
        ("POST", "/v1/products", {}, 400, "parameter_missing", "name"),
        (
            "POST",
            "/v1/products",
            {"name": "x", "metadata[k]": "v" * 501},
            400,
            "parameter_invalid",
            "metadata[k]",
        ),
        (
            "POST",
            "/v1/coupons",
            {"percent_off": "5", "metadata": "x"},
            400,
            "parameter_invalid",
            "metadata",
        ),
        ("GET", "/v1/customers", {}, 404, None, None),
        ("POST", "/v1/events", {}, 404, None, None),
        ("DELETE", "/v1/events/evt_1", {}, 404, None, None),
        ("GET", "/v1", {}, 404, None, None),
    ],
)
def test_errors_have_stripes_shape_and_status(
    stripe_emulator: EmulatorServer,
    method: str,
    path: str,
    params: dict[str, str],
    status: int,
    code: str | None,
    param: str | None,
) -> None:
    result = raw(stripe_emulator, method, path, params)
    error = assert_stripe_error(result, status, code=code, param=param)
    assert result.headers["Content-Type"].startswith("application/json")
    assert result.headers["Request-Id"].startswith("req_")
    if code is None:
        assert error["message"].startswith(f"Unrecognized request URL ({method}: {path})")


def test_sdk_maps_errors_to_its_classes(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.coupons.retrieve("NOPE")
    assert (missing.value.http_status, missing.value.code, missing.value.param) == (
        404,
        "resource_missing",
        "id",
    )
    assert missing.value.request_id is not None and missing.value.request_id.startswith("req_")
    with pytest.raises(stripe.InvalidRequestError) as invalid:
        client.v1.coupons.create(params={"percent_off": 500})
    assert (invalid.value.http_status, invalid.value.code, invalid.value.param) == (
        400,
        "parameter_invalid",
        "percent_off",
    )
    assert TEST_KEY not in str(invalid.value)
