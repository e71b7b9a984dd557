"""Events: one per change with the object after it, filters, retention and visibility delay."""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest
import stripe

from stripe_emulator.server import EmulatorServer
from tests.emulator.emulator_support import CURRENT_VERSION, assert_stripe_error, ids, plain, raw

DAY = 24 * 3600


def events(client: stripe.StripeClient, **params: Any) -> list[dict[str, Any]]:
    """Every listed event (newest first) as plain data."""
    page = client.v1.events.list(params=cast(Any, {"limit": 100, **params}))
    return [plain(event) for event in page.data]


def test_every_change_records_the_right_event(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    account = stripe_emulator.account
    account.clock.freeze()
    product = client.v1.products.create(params={"name": "Mug"})
    account.advance_clock(1)
    product_after_update = client.v1.products.update(product.id, params={"description": "Big"})
    coupon = client.v1.coupons.create(params={"id": "EV", "percent_off": 10, "name": "Ten"})
    coupon_after_update = client.v1.coupons.update("EV", params={"name": "Ten percent"})
    code = client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": "EV"}, "code": "EV10"}
    )
    code_after_update = client.v1.promotion_codes.update(code.id, params={"metadata": {"k": "v"}})
    client.v1.coupons.delete("EV")
    client.v1.products.delete(product.id)
    # A redemption bumps the coupon and the code: both are updates.
    other = client.v1.coupons.create(params={"id": "RD", "amount_off": 100, "currency": "usd"})
    redeemable = client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": other.id}}
    )
    account.redeem(redeemable.id)

    listed = events(client)
    assert [e["type"] for e in listed] == [
        "promotion_code.updated",
        "coupon.updated",
        "promotion_code.created",
        "coupon.created",
        "product.deleted",
        "coupon.deleted",
        "promotion_code.updated",
        "promotion_code.created",
        "coupon.updated",
        "coupon.created",
        "product.updated",
        "product.created",
    ]
    by_step = list(reversed(listed))
    assert by_step[0]["data"] == {"object": plain(product)}
    assert by_step[1]["data"] == {
        "object": plain(product_after_update),
        "previous_attributes": {"description": None, "updated": product.updated},
    }
    assert by_step[2]["data"] == {"object": plain(coupon)}
    assert by_step[3]["data"] == {
        "object": plain(coupon_after_update),
        "previous_attributes": {"name": "Ten"},
    }
    assert by_step[4]["data"] == {"object": plain(code)}
    assert by_step[5]["data"]["object"] == plain(code_after_update)
    assert by_step[5]["data"]["previous_attributes"] == {"metadata": {}}
    assert by_step[6]["data"]["object"]["id"] == "EV"
    assert "previous_attributes" not in by_step[6]["data"]
    assert by_step[7]["data"]["object"]["id"] == product.id
    assert by_step[10]["data"]["previous_attributes"] == {"times_redeemed": 0}
    assert by_step[10]["data"]["object"]["times_redeemed"] == 1
    assert by_step[11]["data"]["previous_attributes"] == {"times_redeemed": 0}
    assert by_step[11]["data"]["object"]["id"] == redeemable.id
    # No promotion_code.deleted exists: there is no delete.
    assert not any(e["type"] == "promotion_code.deleted" for e in listed)


def test_event_fields(client: stripe.StripeClient, stripe_emulator: EmulatorServer) -> None:
    account = stripe_emulator.account
    account.clock.freeze()
    key = f"idem-{uuid.uuid4()}"
    coupon = client.v1.coupons.create(params={"percent_off": 5}, options={"idempotency_key": key})
    assert coupon.last_response is not None
    request_id = coupon.last_response.request_id
    assert request_id and request_id.startswith("req_")

    listed = client.v1.events.list()
    assert len(listed.data) == 1
    event = listed.data[0]
    assert isinstance(event, stripe.Event)
    body = plain(event)
    assert body["id"].startswith("evt_")
    assert body["object"] == "event"
    assert body["type"] == "coupon.created"
    assert body["created"] == account.clock.timestamp()
    assert body["api_version"] == account.api_version == CURRENT_VERSION
    assert body["request"] == {"id": request_id, "idempotency_key": key}
    assert body["pending_webhooks"] == 0 and body["livemode"] is False
    assert plain(client.v1.events.retrieve(body["id"])) == body

    # A change made outside any request (a redemption) carries no request.
    code = client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": coupon.id}}
    )
    account.redeem(code.id)
    assert events(client)[0]["request"] == {"id": None, "idempotency_key": None}


def test_retrieve_unknown_event_is_404(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.events.retrieve("evt_missing")
    assert raised.value.http_status == 404 and raised.value.code == "resource_missing"


def test_type_and_types_filters(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    client.v1.products.create(params={"name": "P"})
    client.v1.coupons.create(params={"id": "T", "percent_off": 5})
    client.v1.coupons.update("T", params={"name": "n"})
    client.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": "T"}})
    client.v1.coupons.delete("T")

    def types(**params: Any) -> list[str]:
        return [e["type"] for e in events(client, **params)]

    assert types(type="coupon.updated") == ["coupon.updated"]
    assert types(type="coupon.*") == ["coupon.deleted", "coupon.updated", "coupon.created"]
    assert types(type="*.created") == [
        "promotion_code.created",
        "coupon.created",
        "product.created",
    ]
    assert types(type="invoice.paid") == []
    assert types(type="coupon.?pdated") == []  # only `*` is a wildcard
    assert types(types=["product.created", "coupon.deleted"]) == [
        "coupon.deleted",
        "product.created",
    ]
    # `types[]` takes exact names only: a wildcard there is a literal name no event has.
    assert types(types=["promotion_code.*", "product.*"]) == []
    assert types(types=["coupon.*", "coupon.deleted"]) == ["coupon.deleted"]
    max_types = [f"coupon.kind{n}" for n in range(19)] + ["coupon.created"]
    assert types(types=max_types) == ["coupon.created"]

    too_many = [("types[]", f"coupon.kind{n}") for n in range(21)]
    assert_stripe_error(
        raw(stripe_emulator, "GET", "/v1/events", too_many),
        400,
        code="parameter_invalid",
        param="types",
    )
    both = [("type", "coupon.created"), ("types[]", "coupon.deleted")]
    result = raw(stripe_emulator, "GET", "/v1/events", both)
    assert result.status == 400 and result.error["param"] in ("type", "types")
    mixed = [("type", "coupon.*"), ("types[]", "coupon.deleted")]
    assert raw(stripe_emulator, "GET", "/v1/events", mixed).status == 400


def test_types_filter_is_exact_over_the_sdk(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    client.v1.coupons.create(params={"id": "X", "percent_off": 5})
    client.v1.coupons.update("X", params={"name": "renamed"})
    client.v1.products.create(params={"name": "P"})
    client.v1.coupons.delete("X")

    def listed(**params: Any) -> list[str]:
        page = client.v1.events.list(params=cast(Any, params))
        return [event.type for event in page.auto_paging_iter()]

    exact = listed(types=["coupon.created", "coupon.deleted"])
    assert exact == ["coupon.deleted", "coupon.created"]
    assert listed(types=["coupon.*"]) == []
    assert listed(types=["*"]) == []
    assert listed(type="coupon.*") == ["coupon.deleted", "coupon.updated", "coupon.created"]
    with pytest.raises(stripe.InvalidRequestError) as raised:
        listed(type="coupon.*", types=["coupon.created"])
    assert raised.value.http_status == 400


def test_created_filter(client: stripe.StripeClient, stripe_emulator: EmulatorServer) -> None:
    account = stripe_emulator.account
    account.clock.freeze()
    stamps = []
    for n in range(4):
        client.v1.coupons.create(params={"id": f"C{n}", "percent_off": 5})
        stamps.append(account.clock.timestamp())
        account.advance_clock(60)

    def names(created: Any) -> list[str]:
        return [e["data"]["object"]["id"] for e in events(client, created=created)]

    assert names(stamps[1]) == ["C1"]
    assert names({"gte": stamps[1]}) == ["C3", "C2", "C1"]
    assert names({"gt": stamps[1]}) == ["C3", "C2"]
    assert names({"lt": stamps[2]}) == ["C1", "C0"]
    assert names({"gte": stamps[1], "lte": stamps[2]}) == ["C2", "C1"]
    page = client.v1.events.list(params={"created": {"gte": stamps[1]}, "limit": 2})
    assert page.has_more is True
    rest = client.v1.events.list(
        params={"created": {"gte": stamps[1]}, "limit": 2, "starting_after": page.data[-1].id}
    )
    assert [e.data.object["id"] for e in rest.data] == ["C1"] and rest.has_more is False


def test_events_older_than_30_days_disappear(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    account = stripe_emulator.account
    client.v1.coupons.create(params={"id": "OLD", "percent_off": 5})
    old_event = events(client)[0]["id"]

    account.advance_clock(29 * DAY)
    client.v1.coupons.create(params={"id": "NEWER", "percent_off": 5})
    assert len(events(client)) == 2
    assert client.v1.events.retrieve(old_event).id == old_event

    account.advance_clock(2 * DAY)  # 31 days after the first event
    listed = events(client)
    assert [e["data"]["object"]["id"] for e in listed] == ["NEWER"]
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.events.retrieve(old_event)
    assert raised.value.http_status == 404
    # The objects themselves stay.
    assert client.v1.coupons.retrieve("OLD").id == "OLD"

    account.advance_clock(30 * DAY)
    assert events(client) == []


def test_old_event_is_gone_even_before_a_list(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    client.v1.coupons.create(params={"id": "OLD", "percent_off": 5})
    old_event = events(client)[0]["id"]
    stripe_emulator.account.advance_clock(31 * DAY)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.events.retrieve(old_event)


def test_visibility_delay_hides_new_events(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    account = stripe_emulator.account
    account.clock.freeze()
    client.v1.coupons.create(params={"id": "SEEN", "percent_off": 5})
    account.set_event_delay(5)
    client.v1.coupons.create(params={"id": "LATE", "percent_off": 5})

    assert [e["data"]["object"]["id"] for e in events(client)] == ["SEEN"]
    assert events(client, type="coupon.created")[0]["data"]["object"]["id"] == "SEEN"
    account.advance_clock(4)
    assert len(events(client)) == 1
    account.advance_clock(1)
    listed = events(client)
    assert [e["data"]["object"]["id"] for e in listed] == ["LATE", "SEEN"]
    # Delayed events keep the moment of the change as `created`.
    assert listed[0]["created"] == listed[1]["created"]
    assert ids(client.v1.events.list(params={"limit": 1}).data) == [listed[0]["id"]]
