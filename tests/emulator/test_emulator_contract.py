"""Contract tests: every object the emulator returns against Stripe's published shapes.

Current shapes: the same keys as the example object in ../shared/stripe/fixtures3.json, and
every non-null value of the JSON type of the example (or, where the example is null or the
schema says `number`, of current-schemas-2026-09-30.json). The old promotion-code shape
(before 2025-09-30): exactly the properties of the 2023-08-16 OpenAPI schema, minus the
expandable ones, with the schema's types. And the `stripe` SDK parses every response into
its own classes without losing anything.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import stripe

from stripe_emulator.server import EmulatorServer
from tests.emulator.emulator_support import (
    CURRENT_VERSION,
    OLD_VERSION,
    current_paths,
    current_schemas,
    fixtures,
    json_type,
    old_schemas,
    plain,
    raw,
    sdk,
    type_matches,
)

JSON_TYPES = {"integer", "number", "string", "boolean", "object", "array"}
PROMOTION_SHAPE_SINCE = "2025-09-30"  # the clover release replaced `coupon` with `promotion`


def promotion_shape(api_version: str) -> bool:
    """Whether a promotion code in this API version has `promotion` (else embeds `coupon`)."""
    return api_version[:10] >= PROMOTION_SHAPE_SINCE


# -- reading the published shapes ----------------------------------------------------------------


def described_types(description: str) -> set[str]:
    """JSON types of a property in the transcription, e.g. `nullable anyOf[string, price]`."""
    text = description.removeprefix("nullable ").strip()
    if text.startswith("anyOf["):
        options = text[len("anyOf[") : text.index("]")].split(",")
        return {"string" if o.strip() == "string" else "object" for o in options}
    if text.startswith("enum"):
        return {"string"}
    if text.startswith("$ref"):
        return {"object"}
    word = re.split(r"[\s(<\[{]", text, maxsplit=1)[0]
    return {word} if word in JSON_TYPES else {"object"}  # a named schema such as `{...}`


def openapi_types(prop: dict[str, Any]) -> set[str]:
    """JSON types of a property of the 2023-08-16 OpenAPI description."""
    if "type" in prop:
        return {str(prop["type"])}
    if "$ref" in prop:
        return {"object"}
    options = prop.get("anyOf") or prop.get("oneOf") or []
    return {str(o.get("type", "object")) if "$ref" not in o else "object" for o in options}


def current_properties(kind: str) -> dict[str, str]:
    schemas = current_schemas()
    if kind in ("deleted_coupon", "deleted_product"):
        props: dict[str, str] = schemas["deleted_coupon/deleted_product"]["properties"]
        return props
    props = schemas[kind]["properties"]
    return props


def expected_types(kind: str, field: str) -> set[str]:
    """The example's type; the schema's where the example is null or the schema says number."""
    described = current_properties(kind).get(field)
    schema_types = described_types(described) if described else set()
    example = fixtures()[kind].get(field)
    if schema_types == {"number"} or example is None:
        assert schema_types, f"{kind}.{field}: neither an example value nor a schema type"
        return schema_types
    return {json_type(example)}


def check_types(where: str, value: Any, expected: set[str]) -> None:
    if value is None:
        return
    assert any(type_matches(value, t) for t in expected), (
        f"{where}: {json_type(value)} {value!r}, expected {sorted(expected)}"
    )


def check_string_map(where: str, value: Any) -> None:
    if value is None:
        return
    assert isinstance(value, dict), where
    for key, item in value.items():
        assert isinstance(key, str) and isinstance(item, str), f"{where}[{key}]"


# -- current shapes -------------------------------------------------------------------------------


def check_current(kind: str, obj: dict[str, Any], expanded: frozenset[str] = frozenset()) -> None:
    """`obj` has the example's keys (plus expansions) and the published types."""
    example = fixtures()[kind]
    keys = set(example) | {field for field in expanded if "." not in field}
    assert set(obj) == keys, (
        f"{kind}: extra {sorted(set(obj) - keys)}, missing {sorted(keys - set(obj))}"
    )
    for field, value in obj.items():
        check_types(f"{kind}.{field}", value, expected_types(kind, field))
    if obj.get("metadata") is not None:
        check_string_map(f"{kind}.metadata", obj["metadata"])
    nested = {
        "coupon": check_coupon_parts,
        "product": check_product_parts,
        "promotion_code": check_promotion_code_parts,
    }.get(kind)
    if nested:
        nested(obj, expanded)


def check_coupon_parts(coupon: dict[str, Any], expanded: frozenset[str]) -> None:
    assert coupon["object"] == "coupon"
    assert coupon["duration"] in ("forever", "once", "repeating")
    assert (coupon["percent_off"] is None) != (coupon["amount_off"] is None)
    assert (coupon["currency"] is None) == (coupon["amount_off"] is None)
    schemas = current_schemas()
    if "applies_to" in expanded:
        applies_to = coupon["applies_to"]
        assert set(applies_to) == set(schemas["coupon_applies_to"]["properties"])
        assert all(isinstance(p, str) for p in applies_to["products"])
    if "currency_options" in expanded:
        option_fields = set(schemas["coupon_currency_option"]["properties"])
        for currency, option in coupon["currency_options"].items():
            assert re.fullmatch(r"[a-z]{3}", currency)
            assert set(option) == option_fields
            check_types(f"currency_options.{currency}", option["amount_off"], {"integer"})


def check_product_parts(product: dict[str, Any], expanded: frozenset[str]) -> None:
    assert product["object"] == "product" and product["type"] in ("good", "service")
    assert product["metadata"] is not None  # not nullable on products
    assert all(isinstance(image, str) for image in product["images"])
    for feature in product["marketing_features"]:
        assert set(feature) == {"name"} and isinstance(feature["name"], str)
    dimensions = product["package_dimensions"]
    if dimensions is not None:
        assert set(dimensions) == set(fixtures()["product"]["package_dimensions"])
        for name, value in dimensions.items():
            check_types(f"package_dimensions.{name}", value, {"number"})


def check_promotion_code_parts(code: dict[str, Any], expanded: frozenset[str]) -> None:
    schemas = current_schemas()
    example = fixtures()["promotion_code"]
    restrictions = code["restrictions"]
    extra = {"currency_options"} if "restrictions.currency_options" in expanded else set()
    assert set(restrictions) == set(example["restrictions"]) | extra
    restriction_props = schemas["promotion_codes_resource_restrictions"]["properties"]
    for field, value in restrictions.items():
        check_types(f"restrictions.{field}", value, described_types(restriction_props[field]))
    for currency, option in restrictions.get("currency_options", {}).items():
        assert set(option) == {"minimum_amount"}, currency
        check_types(
            f"restrictions.currency_options.{currency}", option["minimum_amount"], {"integer"}
        )
    promotion = code["promotion"]
    assert set(promotion) == set(example["promotion"])
    assert promotion["type"] == "coupon"
    if "promotion.coupon" in expanded:
        check_current("coupon", promotion["coupon"])
    else:
        check_types("promotion.coupon", promotion["coupon"], {"string"})
        assert isinstance(promotion["coupon"], str)


# -- the old promotion-code shape (2023-08-16) -------------------------------------------------


def check_old(schema_name: str, obj: dict[str, Any]) -> None:
    """Exactly the schema's non-expandable properties, each of the schema's type."""
    schema = old_schemas()[schema_name]
    properties: dict[str, Any] = schema["properties"]
    expected = set(properties) - set(schema.get("x-expandableFields", []))
    if schema_name == "promotion_code":  # `coupon` is expandable there, and always embedded
        expected = set(properties)
    assert set(obj) == expected, (
        f"{schema_name}: extra {sorted(set(obj) - expected)}, missing {sorted(expected - set(obj))}"
    )
    assert set(schema["required"]) <= set(obj)
    for field, value in obj.items():
        check_types(f"{schema_name}.{field}", value, openapi_types(properties[field]))
        if "$ref" in properties[field] and value is not None:
            check_old(properties[field]["$ref"].rsplit("/", 1)[-1], value)


# -- events, lists, deleted objects --------------------------------------------------------------


def check_event(event: dict[str, Any]) -> None:
    check_current("event", event)
    example = fixtures()["event"]
    assert event["id"].startswith("evt_") and event["object"] == "event"
    data = event["data"]
    assert "object" in data
    assert set(data) <= set(old_schemas()["notification_event_data"]["properties"])
    assert set(event["request"]) == set(example["request"])
    for value in event["request"].values():
        check_types("event.request", value, {"string"})
    obj = data["object"]
    kind = obj["object"]
    assert event["type"].startswith(f"{kind}.")
    if kind == "promotion_code" and not promotion_shape(event["api_version"]):
        check_old("promotion_code", obj)
    else:
        check_current(kind, obj)
    if "previous_attributes" in data:
        assert isinstance(data["previous_attributes"], dict) and data["previous_attributes"]
        assert set(data["previous_attributes"]) <= set(obj)


def check_list(envelope: dict[str, Any], path: str) -> None:
    described: str = current_paths()["GET /v1/coupons"]["response"]
    required = re.search(r"required \[([^\]]+)\]", described)
    assert required is not None
    assert set(envelope) == set(required.group(1).split(","))
    assert envelope["object"] == "list" and isinstance(envelope["has_more"], bool)
    assert isinstance(envelope["data"], list) and envelope["url"] == path


# -- the tests -----------------------------------------------------------------------------------


def test_the_published_files_are_read_as_expected() -> None:
    """The test's own reading of ../shared/stripe agrees with itself (guards the contract)."""
    for kind in ("coupon", "product", "promotion_code", "event"):
        for field, value in fixtures()[kind].items():
            described = current_properties(kind).get(field)
            if value is not None and described:
                assert any(type_matches(value, t) for t in described_types(described)), field
    assert openapi_types(old_schemas()["promotion_code"]["properties"]["customer"]) == {
        "string",
        "object",
    }
    assert "coupon" in old_schemas()["promotion_code"]["properties"]
    assert "promotion" not in old_schemas()["promotion_code"]["properties"]


@pytest.fixture
def populated(client: stripe.StripeClient, stripe_emulator: EmulatorServer) -> dict[str, str]:
    """One of everything, in as many states as the API allows; ids by role."""
    with stripe_emulator.account.rate_limits.paused():  # setup, not the code under test
        now = stripe_emulator.account.clock.timestamp()
        plain_product = client.v1.products.create(params={"name": "Plain"})
        full_product = client.v1.products.create(
            params={
                "name": "Full",
                "description": "All fields",
                "images": ["https://example.com/i.png"],
                "marketing_features": [{"name": "Fast"}],
                "metadata": {"k": "v"},
                "package_dimensions": {"height": 1, "length": 2.5, "weight": 3, "width": 4},
                "shippable": True,
                "statement_descriptor": "FULL PRODUCT",
                "tax_code": "txcd_99999999",
                "type": "good",
                "unit_label": "unit",
                "url": "https://example.com/full",
            }
        )
        client.v1.products.update(full_product.id, params={"default_price": "price_123"})
        percent = client.v1.coupons.create(params={"id": "PCT", "percent_off": 25.5})
        amount = client.v1.coupons.create(
            params={
                "id": "AMT",
                "amount_off": 1500,
                "currency": "jpy",
                "duration": "repeating",
                "duration_in_months": 6,
                "max_redemptions": 100,
                "redeem_by": now + 86400,
                "name": "1500 JPY off",
                "metadata": {"campaign": "spring"},
                "applies_to": {"products": [plain_product.id]},
                "currency_options": {"usd": {"amount_off": 1000}},
            }
        )
        code = client.v1.promotion_codes.create(
            params={
                "promotion": {"type": "coupon", "coupon": amount.id},
                "code": "FULL1",
                "customer": "cus_1",
                "expires_at": now + 3600,
                "max_redemptions": 3,
                "metadata": {"a": "b"},
                "restrictions": {
                    "first_time_transaction": True,
                    "minimum_amount": 5000,
                    "minimum_amount_currency": "jpy",
                    "currency_options": {"usd": {"minimum_amount": 3000}},
                },
            }
        )
        bare = client.v1.promotion_codes.create(
            params={"promotion": {"type": "coupon", "coupon": "PCT"}}
        )
        client.v1.promotion_codes.update(bare.id, params={"active": False})
        stripe_emulator.account.redeem(code.id)
        client.v1.coupons.update("PCT", params={"name": "Quarter"})
    return {
        "plain_product": plain_product.id,
        "full_product": full_product.id,
        "percent": percent.id,
        "amount": amount.id,
        "code": code.id,
        "bare": bare.id,
    }


def test_coupons_match_the_published_coupon(
    client: stripe.StripeClient, populated: dict[str, str]
) -> None:
    for coupon_id in (populated["percent"], populated["amount"]):
        check_current("coupon", plain(client.v1.coupons.retrieve(coupon_id)))
        for expand in (["applies_to"], ["currency_options"], ["applies_to", "currency_options"]):
            expanded = client.v1.coupons.retrieve(coupon_id, params={"expand": expand})
            check_current("coupon", plain(expanded), frozenset(expand))
    page = plain(
        client.v1.coupons.list(params={"expand": ["data.applies_to", "data.currency_options"]})
    )
    for coupon in page["data"]:
        check_current("coupon", coupon, frozenset({"applies_to", "currency_options"}))


def test_products_match_the_published_product(
    client: stripe.StripeClient, populated: dict[str, str]
) -> None:
    for role in ("plain_product", "full_product"):
        check_current("product", plain(client.v1.products.retrieve(populated[role])))


def test_promotion_codes_match_the_current_shape(
    client: stripe.StripeClient, populated: dict[str, str]
) -> None:
    for role in ("code", "bare"):
        check_current("promotion_code", plain(client.v1.promotion_codes.retrieve(populated[role])))
        for expand in (["promotion.coupon"], ["restrictions.currency_options"]):
            expanded = client.v1.promotion_codes.retrieve(
                populated[role], params={"expand": expand}
            )
            check_current("promotion_code", plain(expanded), frozenset(expand))


@pytest.mark.parametrize("version", ["2023-08-16", OLD_VERSION, "2025-08-27.basil"])
def test_promotion_codes_match_the_2023_shape_before_2025_09_30(
    stripe_emulator: EmulatorServer, populated: dict[str, str], version: str
) -> None:
    old = sdk(stripe_emulator, version=version)
    for role in ("code", "bare"):
        body = plain(old.v1.promotion_codes.retrieve(populated[role]))
        check_old("promotion_code", body)
        assert "promotion" not in body and "customer_account" not in body
    for code in plain(old.v1.promotion_codes.list())["data"]:
        check_old("promotion_code", code)
    check_old("coupon", plain(old.v1.coupons.retrieve(populated["amount"])))


def test_events_match_the_published_event(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer, populated: dict[str, str]
) -> None:
    account = stripe_emulator.account
    account.set_api_version(OLD_VERSION)
    client.v1.promotion_codes.update(populated["code"], params={"metadata": {"v": "old"}})
    account.set_api_version(CURRENT_VERSION)
    client.v1.coupons.delete(populated["percent"])
    client.v1.products.update(populated["full_product"], params={"default_price": ""})
    client.v1.products.delete(populated["full_product"])
    events = [plain(e) for e in client.v1.events.list(params={"limit": 100}).auto_paging_iter()]
    assert {e["type"] for e in events} == {
        "coupon.created",
        "coupon.updated",
        "coupon.deleted",
        "product.created",
        "product.updated",
        "product.deleted",
        "promotion_code.created",
        "promotion_code.updated",
    }
    assert {e["api_version"] for e in events} == {CURRENT_VERSION, OLD_VERSION}
    for event in events:
        check_event(event)


def test_deleted_objects_match_the_published_deleted_objects(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer, populated: dict[str, str]
) -> None:
    deleted_coupon = raw(stripe_emulator, "DELETE", f"/v1/coupons/{populated['amount']}").body
    deleted_product = raw(
        stripe_emulator, "DELETE", f"/v1/products/{populated['plain_product']}"
    ).body
    check_current("deleted_coupon", deleted_coupon)
    check_current("deleted_product", deleted_product)
    assert deleted_coupon == {**fixtures()["deleted_coupon"], "id": populated["amount"]}
    assert deleted_product == {**fixtures()["deleted_product"], "id": populated["plain_product"]}


@pytest.mark.parametrize("kind", ["coupons", "products", "promotion_codes", "events"])
def test_list_envelopes_match_the_published_list(
    stripe_emulator: EmulatorServer, populated: dict[str, str], kind: str
) -> None:
    page = raw(stripe_emulator, "GET", f"/v1/{kind}", {"limit": 1})
    check_list(page.body, f"/v1/{kind}")
    assert page.body["has_more"] is True
    empty = raw(stripe_emulator, "GET", f"/v1/{kind}", {"created": 1})
    check_list(empty.body, f"/v1/{kind}")


@pytest.mark.parametrize("version", [CURRENT_VERSION, OLD_VERSION])
def test_every_seeded_object_matches(stripe_emulator: EmulatorServer, version: str) -> None:
    account = stripe_emulator.account
    account.seed(promotion_codes=600)
    for coupon in account.state("coupon", version).values():
        check_current("coupon", coupon)
    for product in account.state("product", version).values():
        check_current("product", product)
    for code in account.state("promotion_code", version).values():
        if promotion_shape(version):
            check_current("promotion_code", code)
        else:
            check_old("promotion_code", code)
    for event in account.state("event", version).values():
        check_event(event)


# -- the SDK parses every response ---------------------------------------------------------------


def test_the_sdk_parses_every_response(
    client: stripe.StripeClient, stripe_emulator: EmulatorServer, populated: dict[str, str]
) -> None:
    def same(
        obj: stripe.StripeObject,
        path: str,
        params: Any = None,
        version: str | None = None,
    ) -> None:
        body = raw(stripe_emulator, "GET", path, params, version=version).body
        assert plain(obj) == body, path

    coupon = client.v1.coupons.retrieve(populated["amount"])
    assert (
        isinstance(coupon, stripe.Coupon)
        and coupon.to_dict()
        == raw(stripe_emulator, "GET", f"/v1/coupons/{populated['amount']}").body
    )
    expanded = client.v1.coupons.retrieve(
        populated["amount"], params={"expand": ["applies_to", "currency_options"]}
    )
    assert isinstance(expanded, stripe.Coupon)
    same(
        expanded,
        f"/v1/coupons/{populated['amount']}",
        [("expand[]", "applies_to"), ("expand[]", "currency_options")],
    )

    product = client.v1.products.retrieve(populated["full_product"])
    assert isinstance(product, stripe.Product)
    assert (
        product.to_dict()
        == raw(stripe_emulator, "GET", f"/v1/products/{populated['full_product']}").body
    )

    code = client.v1.promotion_codes.retrieve(populated["code"])
    assert isinstance(code, stripe.PromotionCode)
    assert (
        code.to_dict()
        == raw(stripe_emulator, "GET", f"/v1/promotion_codes/{populated['code']}").body
    )
    old_code = sdk(stripe_emulator, version=OLD_VERSION).v1.promotion_codes.retrieve(
        populated["code"]
    )
    assert isinstance(old_code, stripe.PromotionCode)
    assert isinstance(old_code["coupon"], stripe.Coupon)
    same(old_code, f"/v1/promotion_codes/{populated['code']}", version=OLD_VERSION)

    listed = client.v1.promotion_codes.list()
    assert isinstance(listed, stripe.ListObject)
    assert all(isinstance(item, stripe.PromotionCode) for item in listed.data)
    same(listed, "/v1/promotion_codes")

    events = client.v1.events.list(params={"limit": 100})
    assert all(isinstance(event, stripe.Event) for event in events.data)
    same(events, "/v1/events", {"limit": 100})
    event = client.v1.events.retrieve(events.data[0].id)
    assert isinstance(event, stripe.Event)
    same(event, f"/v1/events/{event.id}")

    deleted = client.v1.coupons.delete(populated["percent"])
    assert isinstance(deleted, stripe.Coupon)
    assert deleted.to_dict() == {"id": populated["percent"], "object": "coupon", "deleted": True}
    client.v1.products.update(populated["full_product"], params={"default_price": ""})
    deleted_product = client.v1.products.delete(populated["full_product"])
    assert isinstance(deleted_product, stripe.Product)
    assert deleted_product.to_dict() == {
        "id": populated["full_product"],
        "object": "product",
        "deleted": True,
    }
