"""Products: create, retrieve, update of every updatable field, `updated`, delete, filters."""

from __future__ import annotations

from typing import Any, cast

import pytest
import stripe

from stripe_emulator.server import EmulatorServer
from tests.emulator.emulator_support import assert_stripe_error, ids, raw

FULL: dict[str, Any] = {
    "id": "prod_custom1",
    "name": "Organic T-shirt",
    "active": False,
    "description": "Soft cotton.",
    "images": ["https://example.com/a.png", "https://example.com/b.png"],
    "marketing_features": [{"name": "Free shipping"}, {"name": "Organic"}],
    "metadata": {"sku": "TS-1"},
    "package_dimensions": {"height": 2.5, "length": 10, "weight": 12.25, "width": 8},
    "shippable": True,
    "statement_descriptor": "ORGANIC TEE",
    "tax_code": "txcd_99999999",
    "type": "good",
    "unit_label": "shirt",
    "url": "https://example.com/tee",
}


def test_create_minimal_product_has_stripe_defaults(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    product = client.v1.products.create(params={"name": "Mug"})
    body = product.to_dict()
    assert isinstance(product, stripe.Product)
    assert product.id.startswith("prod_") and len(product.id) > 10
    assert body["object"] == "product" and body["name"] == "Mug"
    assert body["active"] is True and body["type"] == "service"
    assert body["images"] == [] and body["marketing_features"] == [] and body["metadata"] == {}
    for name in (
        "default_price",
        "description",
        "package_dimensions",
        "shippable",
        "statement_descriptor",
        "tax_code",
        "unit_label",
        "url",
    ):
        assert body[name] is None, name
    assert body["updated"] == body["created"]
    assert abs(body["created"] - stripe_emulator.account.clock.now()) <= 2
    assert client.v1.products.retrieve(product.id).to_dict() == body


def test_create_with_every_field(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params=cast(Any, FULL))
    body = product.to_dict()
    for name, value in FULL.items():
        assert body[name] == value, name
    assert client.v1.products.retrieve("prod_custom1").to_dict() == body


@pytest.mark.parametrize(
    ("params", "code", "param"),
    [
        ({}, "parameter_missing", "name"),
        ({"name": ""}, "parameter_invalid", "name"),
        ({"name": "x", "type": "digital"}, "parameter_invalid", "type"),
        (
            {"name": "x", "statement_descriptor": "<bad>"},
            "parameter_invalid",
            "statement_descriptor",
        ),
        ({"name": "x", "unit_label": "x" * 13}, "parameter_invalid", "unit_label"),
        ({"name": "x", "shippable": "maybe"}, "parameter_invalid", "shippable"),
        ({"name": "x", "default_price": "price_1"}, "parameter_unknown", "default_price"),
        ({"name": "x", "updated": "5"}, "parameter_unknown", "updated"),
    ],
)
def test_invalid_create_is_rejected(
    stripe_emulator: EmulatorServer, params: dict[str, str], code: str, param: str
) -> None:
    result = raw(stripe_emulator, "POST", "/v1/products", params)
    assert_stripe_error(result, 400, code=code, param=param)
    assert stripe_emulator.account.state("product") == {}


def test_duplicate_id_is_rejected(client: stripe.StripeClient) -> None:
    client.v1.products.create(params={"id": "prod_same", "name": "A"})
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.products.create(params={"id": "prod_same", "name": "B"})
    assert raised.value.code == "resource_already_exists"
    assert client.v1.products.retrieve("prod_same").name == "A"


UPDATES: list[tuple[str, Any, Any]] = [
    # (field, value sent, value rendered)
    ("active", False, False),
    ("name", "Renamed", "Renamed"),
    ("description", "New text", "New text"),
    ("metadata", {"a": "1"}, {"a": "1"}),
    ("images", ["https://example.com/x.png"], ["https://example.com/x.png"]),
    ("marketing_features", [{"name": "Fast"}], [{"name": "Fast"}]),
    (
        "package_dimensions",
        {"height": 1.5, "length": 2, "weight": 3, "width": 4},
        {"height": 1.5, "length": 2.0, "weight": 3.0, "width": 4.0},
    ),
    ("shippable", True, True),
    ("statement_descriptor", "NEW NAME", "NEW NAME"),
    ("tax_code", "txcd_10000000", "txcd_10000000"),
    ("unit_label", "seat", "seat"),
    ("url", "https://example.com/new", "https://example.com/new"),
    ("default_price", "price_123", "price_123"),
]


@pytest.mark.parametrize(("field", "sent", "rendered"), UPDATES, ids=[u[0] for u in UPDATES])
def test_update_each_field_bumps_updated_and_records_an_event(
    client: stripe.StripeClient,
    stripe_emulator: EmulatorServer,
    field: str,
    sent: Any,
    rendered: Any,
) -> None:
    account = stripe_emulator.account
    account.clock.freeze()
    product = client.v1.products.create(params={"name": "Lamp"})
    before = product.to_dict()
    account.advance_clock(7)

    updated = client.v1.products.update(product.id, params=cast(Any, {field: sent})).to_dict()
    assert updated[field] == rendered
    assert updated["updated"] == before["created"] + 7
    assert updated["created"] == before["created"]
    unchanged = {k for k in before if k not in (field, "updated")}
    assert {k: updated[k] for k in unchanged} == {k: before[k] for k in unchanged}
    assert client.v1.products.retrieve(product.id).to_dict() == updated

    event = client.v1.events.list(params={"type": "product.updated"}).data[0].to_dict()
    assert event["data"]["object"] == updated
    assert event["data"]["previous_attributes"] == {
        field: before[field],
        "updated": before["updated"],
    }


def test_updated_bumps_on_every_change(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    account = stripe_emulator.account
    account.clock.freeze()
    product = client.v1.products.create(params={"name": "Desk"})
    stamps = [product.updated]
    for step, params in enumerate(
        [{"name": "Desk 2"}, {"active": False}, {"metadata": {"x": "y"}}, {"active": True}]
    ):
        account.advance_clock(3)
        stamps.append(client.v1.products.update(product.id, params=cast(Any, params)).updated)
        assert stamps[-1] == product.created + 3 * (step + 1)
    assert stamps == sorted(set(stamps))
    assert len(client.v1.events.list(params={"type": "product.updated"}).data) == 4


@pytest.mark.parametrize(
    ("params", "code", "param"),
    [
        ({"type": "good"}, "parameter_unknown", "type"),
        ({"id": "prod_other"}, "parameter_unknown", "id"),
        ({"created": "5"}, "parameter_unknown", "created"),
        ({"name": ""}, "parameter_invalid", "name"),
        ({"statement_descriptor": "ab"}, "parameter_invalid", "statement_descriptor"),
    ],
)
def test_invalid_update_is_rejected(
    stripe_emulator: EmulatorServer, params: dict[str, str], code: str, param: str
) -> None:
    created = raw(stripe_emulator, "POST", "/v1/products", {"name": "Pen"}).body
    result = raw(stripe_emulator, "POST", f"/v1/products/{created['id']}", params)
    assert_stripe_error(result, 400, code=code, param=param)
    assert raw(stripe_emulator, "GET", f"/v1/products/{created['id']}").body == created


def test_delete_is_refused_while_default_price_is_set(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> None:
    product = client.v1.products.create(params={"name": "Course"})
    client.v1.products.update(product.id, params={"default_price": "price_abc"})

    refused = raw(stripe_emulator, "DELETE", f"/v1/products/{product.id}")
    assert refused.status == 400 and refused.error["type"] == "invalid_request_error"
    assert client.v1.products.retrieve(product.id).default_price == "price_abc"
    assert ids(client.v1.products.list().data) == [product.id]

    client.v1.products.update(product.id, params={"default_price": ""})
    deleted = client.v1.products.delete(product.id)
    assert deleted.to_dict() == {"id": product.id, "object": "product", "deleted": True}
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.products.retrieve(product.id)
    assert raised.value.http_status == 404 and raised.value.code == "resource_missing"
    assert client.v1.products.list().data == []
    again = raw(stripe_emulator, "DELETE", f"/v1/products/{product.id}")
    assert_stripe_error(again, 404, code="resource_missing", param="id")


def test_list_filters(client: stripe.StripeClient, stripe_emulator: EmulatorServer) -> None:
    tee = client.v1.products.create(
        params={"name": "Tee", "type": "good", "shippable": True, "url": "https://e.com/tee"}
    ).id
    old = client.v1.products.create(params={"name": "Old", "type": "good", "active": False}).id
    plan = client.v1.products.create(params={"name": "Plan", "url": "https://e.com/plan"}).id
    ship2 = client.v1.products.create(params={"name": "Box", "shippable": False}).id

    def listed(params: dict[str, Any]) -> list[str]:
        return ids(client.v1.products.list(params=cast(Any, params)).data)

    assert listed({}) == [ship2, plan, old, tee]
    assert listed({"active": True}) == [ship2, plan, tee]
    assert listed({"active": False}) == [old]
    assert listed({"type": "good"}) == [old, tee]
    assert listed({"type": "service"}) == [ship2, plan]
    assert listed({"shippable": True}) == [tee]
    assert listed({"shippable": False}) == [ship2]
    assert listed({"url": "https://e.com/plan"}) == [plan]
    assert listed({"ids": [tee, plan, "prod_unknown"]}) == [plan, tee]
    assert listed({"ids": [tee, old], "active": True}) == [tee]
    assert listed({"type": "good", "active": True, "limit": 1}) == [tee]

    for cursor in ("starting_after", "ending_before"):
        result = raw(stripe_emulator, "GET", "/v1/products", {"ids[]": tee, cursor: plan})
        assert_stripe_error(result, 400, code="parameter_invalid", param="ids")
