"""Products: `updated` bumps on every change; archiving is `active=false`."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from . import params as p
from .collection import Collection, RequestContext
from .coupons import apply_metadata
from .errors import StripeError, invalid

PRODUCT_ID = re.compile(r"^[A-Za-z0-9_\-]{1,200}$")
STATEMENT_FORBIDDEN = set("<>\\'\"*")

DIMENSIONS = p.struct({name: p.number(0, 1e12) for name in ("height", "length", "weight", "width")})
FEATURE = p.struct({"name": p.text(80, nullable=False)})

UPDATE_SPEC: dict[str, p.Parser] = {
    "active": p.boolean,
    "name": p.text(5000, nullable=False),
    "description": p.text(40000),
    "metadata": p.metadata,
    "images": p.string_list(8, 2048),
    "marketing_features": p.list_of(FEATURE, 15),
    "package_dimensions": DIMENSIONS,
    "shippable": p.boolean,
    "statement_descriptor": p.text(22),
    "tax_code": p.text(),
    "unit_label": p.text(12),
    "url": p.text(2048),
    "default_price": p.text(),
    "expand": p.expand_list,
}
CREATE_SPEC: dict[str, p.Parser] = {
    **{k: v for k, v in UPDATE_SPEC.items() if k != "default_price"},
    "id": p.text(200),
    "type": p.enum("good", "service"),
}
# Fields an update may set, in the order Stripe renders them.
SETTABLE = [k for k in UPDATE_SPEC if k not in ("expand", "metadata")]


@dataclass(slots=True)
class ProductRecord:
    """A product as the emulator stores it."""

    id: str
    created: int
    seq: int
    name: str
    updated: int
    active: bool = True
    default_price: str | None = None
    description: str | None = None
    images: list[str] = field(default_factory=list)
    marketing_features: list[dict[str, str]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    package_dimensions: dict[str, float] | None = None
    shippable: bool | None = None
    statement_descriptor: str | None = None
    tax_code: str | None = None
    type: str = "service"
    unit_label: str | None = None
    url: str | None = None
    livemode: bool = False
    deleted: bool = False


def _check_statement_descriptor(value: str | None) -> None:
    if value is not None and (len(value) < 5 or STATEMENT_FORBIDDEN & set(value)):
        raise invalid(
            "statement_descriptor must be 5 to 22 characters without <>\\'\"*.",
            "statement_descriptor",
        )


class Products(Collection[ProductRecord]):
    """`/v1/products`."""

    kind = "product"
    path = "/v1/products"
    list_filters: ClassVar[Mapping[str, p.Parser]] = {
        "active": p.boolean,
        "ids": p.string_list(100),
        "shippable": p.boolean,
        "type": p.enum("good", "service"),
        "url": p.text(),
    }

    def render(
        self, record: ProductRecord, api_version: str, expand: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        body = {
            "id": record.id,
            "object": "product",
            "active": record.active,
            "created": record.created,
            "default_price": record.default_price,
            "description": record.description,
            "images": list(record.images),
            "livemode": record.livemode,
            "marketing_features": [dict(f) for f in record.marketing_features],
            "metadata": dict(record.metadata),
            "name": record.name,
            "package_dimensions": dict(record.package_dimensions)
            if record.package_dimensions
            else None,
            "shippable": record.shippable,
            "statement_descriptor": record.statement_descriptor,
            "tax_code": record.tax_code,
            "type": record.type,
            "unit_label": record.unit_label,
            "updated": record.updated,
            "url": record.url,
        }
        return self.with_extra_fields(body)

    def check_list_filters(self, filters: dict[str, Any], *, cursors: bool) -> None:
        if filters.get("ids") and cursors:
            raise invalid(
                "You cannot use `ids` together with `starting_after` or `ending_before`.", "ids"
            )

    def list_predicate(self, filters: dict[str, Any]) -> Callable[[str], bool] | None:
        if not filters:
            return None
        ids = set(filters.pop("ids", None) or []) or None

        def accept(object_id: str) -> bool:
            record = self.records[object_id]
            if ids is not None and object_id not in ids:
                return False
            return all(getattr(record, name) == value for name, value in filters.items())

        return accept

    def create(self, params: Mapping[str, Any], ctx: RequestContext) -> dict[str, Any]:
        parsed = p.parse(params, CREATE_SPEC)
        p.require(parsed, "name")
        _check_statement_descriptor(parsed.get("statement_descriptor"))
        product_id = parsed.get("id") or self.account.new_id("prod_", 14)
        if not PRODUCT_ID.match(product_id):
            raise invalid(f"Invalid product id: {product_id}", "id")
        if product_id in self.index:
            raise StripeError(
                400,
                f"Product already exists: {product_id}",
                code="resource_already_exists",
                param="id",
            )
        now = self.account.clock.timestamp()
        record = ProductRecord(
            id=product_id,
            created=now,
            seq=self.account.next_seq(),
            name=parsed["name"],
            updated=now,
            type=parsed.get("type") or "service",
            metadata=apply_metadata({}, parsed.get("metadata") or {}),
            livemode=self.account.livemode,
        )
        for name in SETTABLE:
            if name in parsed and name != "default_price":
                setattr(record, name, self._stored(name, parsed[name]))
        self.insert(record)
        self.record_event("created", record, ctx)
        return self.render(record, ctx.api_version)

    def update(
        self, object_id: str, params: Mapping[str, Any], ctx: RequestContext
    ) -> dict[str, Any]:
        parsed = p.parse(params, UPDATE_SPEC)
        record = self.live(object_id)
        _check_statement_descriptor(parsed.get("statement_descriptor"))
        price = parsed.get("default_price")
        if price is not None and not price.startswith("price_"):
            raise StripeError(
                404, f"No such price: '{price}'", code="resource_missing", param="default_price"
            )
        before = self.render_current(record)
        for name in SETTABLE:
            if name in parsed:
                setattr(record, name, self._stored(name, parsed[name]))
        if "metadata" in parsed:
            record.metadata = apply_metadata(record.metadata, parsed["metadata"])
        changed = self.render_current(record) != before
        if changed:
            record.updated = max(self.account.clock.timestamp(), record.updated)
            self.record_event("updated", record, ctx, before)
        return self.render(record, ctx.api_version)

    def delete(
        self, object_id: str, params: Mapping[str, Any], ctx: RequestContext
    ) -> dict[str, Any]:
        p.parse(params, {})
        record = self.live(object_id)
        if record.default_price is not None:
            raise invalid(
                "This product cannot be deleted because it has one or more user-created prices.",
                "id",
                "product_has_prices",
            )
        self.record_event("deleted", record, ctx)
        record.deleted = True
        self.index.remove(record.id)
        return {"id": record.id, "object": "product", "deleted": True}

    @staticmethod
    def _stored(name: str, value: Any) -> Any:
        """Defaults Stripe applies for unset values."""
        if name == "active":
            return True if value is None else value
        if name in ("images", "marketing_features"):
            return list(value or [])
        return value
