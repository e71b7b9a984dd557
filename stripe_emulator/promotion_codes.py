"""Promotion codes: customer-facing codes for a coupon; deactivated, never deleted."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from . import params as p
from .collection import Collection, RequestContext
from .coupons import CouponRecord, apply_metadata
from .errors import StripeError, invalid

# From this version on a code names its coupon under `promotion`, before it embeds `coupon`.
PROMOTION_SHAPE_SINCE = "2025-09-30"
CODE_CHARS = re.compile(r"^[A-Za-z0-9\-]{1,500}$")

RESTRICTION_OPTIONS = p.mapping(p.struct({"minimum_amount": p.integer(0)}))
RESTRICTIONS = p.struct(
    {
        "first_time_transaction": p.boolean,
        "minimum_amount": p.integer(0),
        "minimum_amount_currency": p.currency,
        "currency_options": RESTRICTION_OPTIONS,
    }
)
COMMON_CREATE: dict[str, p.Parser] = {
    "code": p.text(500),
    "active": p.boolean,
    "customer": p.text(),
    "expires_at": p.integer(0),
    "max_redemptions": p.integer(1),
    "metadata": p.metadata,
    "restrictions": RESTRICTIONS,
    "expand": p.expand_list,
}
CREATE_SPEC_OLD: dict[str, p.Parser] = {**COMMON_CREATE, "coupon": p.text()}
CREATE_SPEC_NEW: dict[str, p.Parser] = {
    **COMMON_CREATE,
    "customer_account": p.text(),
    "promotion": p.struct({"type": p.enum("coupon"), "coupon": p.text()}),
}
UPDATE_SPEC: dict[str, p.Parser] = {
    "active": p.boolean,
    "metadata": p.metadata,
    "restrictions": p.struct({"currency_options": RESTRICTION_OPTIONS}),
    "expand": p.expand_list,
}


def promotion_shape(api_version: str) -> bool:
    """Whether `api_version` renders `promotion.coupon` (else an embedded `coupon`)."""
    return api_version[:10] >= PROMOTION_SHAPE_SINCE


@dataclass(slots=True)
class PromotionCodeRecord:
    """A promotion code as the emulator stores it."""

    id: str
    created: int
    seq: int
    code: str
    coupon: CouponRecord
    active: bool = True
    customer: str | None = None
    customer_account: str | None = None
    expires_at: int | None = None
    max_redemptions: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    first_time_transaction: bool = False
    minimum_amount: int | None = None
    minimum_amount_currency: str | None = None
    currency_options: dict[str, dict[str, int]] = field(default_factory=dict)
    times_redeemed: int = 0
    livemode: bool = False


class PromotionCodes(Collection[PromotionCodeRecord]):
    """`/v1/promotion_codes`."""

    kind = "promotion_code"
    path = "/v1/promotion_codes"
    expandable = frozenset(
        {"coupon", "customer", "promotion.coupon", "restrictions.currency_options"}
    )
    list_filters: ClassVar[Mapping[str, p.Parser]] = {
        "active": p.boolean,
        "code": p.text(),
        "coupon": p.text(),
        "customer": p.text(),
    }

    def __init__(self, account: Any) -> None:
        super().__init__(account)
        self._by_code: dict[tuple[str, str], list[PromotionCodeRecord]] = {}

    def is_active(self, record: PromotionCodeRecord) -> bool:
        """Stripe's `active`: switched on, and its coupon still valid."""
        return record.active and record.coupon.valid_at(self.account.clock.now())

    def render(
        self, record: PromotionCodeRecord, api_version: str, expand: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        restrictions: dict[str, Any] = {
            "first_time_transaction": record.first_time_transaction,
            "minimum_amount": record.minimum_amount,
            "minimum_amount_currency": record.minimum_amount_currency,
        }
        if "restrictions.currency_options" in expand:
            restrictions["currency_options"] = {
                k: dict(v) for k, v in record.currency_options.items()
            }
        customer: Any = record.customer
        if customer is not None and "customer" in expand:
            customer = {"id": customer, "object": "customer"}
        body: dict[str, Any] = {
            "id": record.id,
            "object": "promotion_code",
            "active": self.is_active(record),
            "code": record.code,
        }
        coupons = self.account.coupons
        new_shape = promotion_shape(api_version)
        if not new_shape:
            body["coupon"] = coupons.render(record.coupon, api_version)
        # Field by field, not `update({...})`: lists render 100 of these per page.
        body["created"] = record.created
        body["customer"] = customer
        body["expires_at"] = record.expires_at
        body["livemode"] = record.livemode
        body["max_redemptions"] = record.max_redemptions
        body["metadata"] = dict(record.metadata)
        body["restrictions"] = restrictions
        body["times_redeemed"] = record.times_redeemed
        if new_shape:
            coupon: Any = record.coupon.id
            if "promotion.coupon" in expand:
                coupon = coupons.render(record.coupon, api_version)
            body["promotion"] = {"coupon": coupon, "type": "coupon"}
            body["customer_account"] = record.customer_account
        return self.with_extra_fields(body)

    def list_predicate(self, filters: dict[str, Any]) -> Callable[[str], bool] | None:
        if not filters:
            return None
        code = filters.get("code")
        code = code.lower() if code else None

        def accept(object_id: str) -> bool:
            record = self.records[object_id]
            return (
                (code is None or record.code.lower() == code)
                and ("coupon" not in filters or record.coupon.id == filters["coupon"])
                and ("customer" not in filters or record.customer == filters["customer"])
                and ("active" not in filters or self.is_active(record) == filters["active"])
            )

        return accept

    def create(self, params: Mapping[str, Any], ctx: RequestContext) -> dict[str, Any]:
        new_shape = promotion_shape(ctx.api_version)
        parsed = p.parse(params, CREATE_SPEC_NEW if new_shape else CREATE_SPEC_OLD)
        if new_shape:
            promotion = parsed.get("promotion") or {}
            coupon_param = "promotion[coupon]"
            coupon_id = promotion.get("coupon")
            if promotion.get("type") != "coupon":
                raise invalid(
                    "Missing required param: promotion[type].",
                    "promotion[type]",
                    "parameter_missing",
                )
        else:
            coupon_param, coupon_id = "coupon", parsed.get("coupon")
        if not coupon_id:
            raise invalid(
                f"Missing required param: {coupon_param}.", coupon_param, "parameter_missing"
            )
        coupon = self.account.coupons.live(coupon_id, coupon_param)
        now = self.account.clock.now()
        if not coupon.valid_at(now):
            raise invalid(f"Coupon {coupon.id} is no longer valid.", coupon_param, "coupon_expired")
        expires_at = parsed.get("expires_at")
        if expires_at is not None and expires_at <= now:
            raise invalid("Date must be in the future: expires_at.", "expires_at")
        if (
            expires_at is not None
            and coupon.redeem_by is not None
            and expires_at > coupon.redeem_by
        ):
            raise invalid(
                "The promotion code's expires_at cannot be after the coupon's redeem_by.",
                "expires_at",
            )
        restrictions = parsed.get("restrictions") or {}
        if (restrictions.get("minimum_amount") is None) != (
            restrictions.get("minimum_amount_currency") is None
        ):
            raise invalid(
                "minimum_amount and minimum_amount_currency must be set together.",
                "restrictions[minimum_amount_currency]",
            )
        customer = parsed.get("customer")
        active = parsed.get("active")
        active = True if active is None else active
        code = parsed.get("code")
        if code is None:
            code = self._generated_code(customer)
        elif not CODE_CHARS.match(code):
            raise invalid("Promotion codes may only contain letters, digits and dashes.", "code")
        if active:
            self._check_unique(code, customer)
        record = PromotionCodeRecord(
            id=self.account.new_id("promo_", 24),
            created=int(now),
            seq=self.account.next_seq(),
            code=code,
            coupon=coupon,
            active=active,
            customer=customer,
            customer_account=parsed.get("customer_account"),
            expires_at=expires_at,
            max_redemptions=parsed.get("max_redemptions"),
            metadata=apply_metadata({}, parsed.get("metadata") or {}),
            first_time_transaction=bool(restrictions.get("first_time_transaction")),
            minimum_amount=restrictions.get("minimum_amount"),
            minimum_amount_currency=restrictions.get("minimum_amount_currency"),
            currency_options={
                k: dict(v) for k, v in (restrictions.get("currency_options") or {}).items()
            },
            livemode=self.account.livemode,
        )
        self.insert(record)
        self.record_event("created", record, ctx)
        return self.render(record, ctx.api_version, self._expansions(parsed.get("expand", [])))

    def insert(self, record: PromotionCodeRecord) -> PromotionCodeRecord:
        self._by_code.setdefault((record.customer or "", record.code.lower()), []).append(record)
        return super().insert(record)

    def update(
        self, object_id: str, params: Mapping[str, Any], ctx: RequestContext
    ) -> dict[str, Any]:
        parsed = p.parse(params, UPDATE_SPEC)
        record = self.live(object_id)
        if parsed.get("active") and not record.active:
            if not record.coupon.valid_at(self.account.clock.now()):
                raise invalid(
                    f"Coupon {record.coupon.id} is no longer valid.", "active", "coupon_expired"
                )
            self._check_unique(record.code, record.customer)
        before = self.render_current(record)
        if parsed.get("active") is not None:
            record.active = parsed["active"]
        if "metadata" in parsed:
            record.metadata = apply_metadata(record.metadata, parsed["metadata"])
        options = (parsed.get("restrictions") or {}).get("currency_options")
        if options:
            record.currency_options.update({k: dict(v) for k, v in options.items()})
        if self.render_current(record) != before:
            self.record_event("updated", record, ctx, before)
        return self.render(record, ctx.api_version, self._expansions(parsed.get("expand", [])))

    def redeem(self, object_id: str, ctx: RequestContext | None = None) -> dict[str, Any]:
        """A customer redeems the code: bumps it and its coupon, as a checkout would."""
        record = self.live(object_id)
        now = self.account.clock.now()
        if not self.is_active(record):
            raise invalid(f"Promotion code {record.code} is not active.", "promotion_code")
        if record.expires_at is not None and now >= record.expires_at:
            raise invalid(f"Promotion code {record.code} has expired.", "promotion_code")
        if record.max_redemptions is not None and record.times_redeemed >= record.max_redemptions:
            raise invalid(
                f"Promotion code {record.code} has reached max_redemptions.", "promotion_code"
            )
        before = self.render_current(record)
        self.account.coupons.redeem(record.coupon, ctx)
        record.times_redeemed += 1
        self.record_event("updated", record, ctx, before)
        return self.render_current(record)

    def _check_unique(self, code: str, customer: str | None) -> None:
        for other in self._by_code.get((customer or "", code.lower()), []):
            if self.is_active(other):
                raise StripeError(
                    400,
                    f"An active promotion code with `code: {code}` already exists.",
                    code="resource_already_exists",
                    param="code",
                )

    def _generated_code(self, customer: str | None) -> str:
        while True:
            code = self.account.new_id("", 8, upper=True)
            if not any(
                self.is_active(o) for o in self._by_code.get((customer or "", code.lower()), [])
            ):
                return code
