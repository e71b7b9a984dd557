"""Coupons: percent or amount off, validity by `redeem_by` and `max_redemptions`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import params as p
from .collection import Collection, RequestContext
from .errors import StripeError, invalid

COUPON_ID = re.compile(r"^[A-Za-z0-9_\-]{1,200}$")

CURRENCY_OPTIONS = p.mapping(p.struct({"amount_off": p.integer(0)}))

CREATE_SPEC: dict[str, p.Parser] = {
    "id": p.text(200),
    "percent_off": p.number(0, 100),
    "amount_off": p.integer(1),
    "currency": p.currency,
    "duration": p.enum("once", "repeating", "forever"),
    "duration_in_months": p.integer(1, 1200),
    "max_redemptions": p.integer(1),
    "redeem_by": p.integer(0),
    "name": p.text(40),
    "metadata": p.metadata,
    "applies_to": p.struct({"products": p.string_list(100)}),
    "currency_options": CURRENCY_OPTIONS,
    "expand": p.expand_list,
}
UPDATE_SPEC: dict[str, p.Parser] = {
    "name": p.text(40),
    "metadata": p.metadata,
    "currency_options": CURRENCY_OPTIONS,
    "expand": p.expand_list,
}


@dataclass(slots=True)
class CouponRecord:
    """A coupon as the emulator stores it."""

    id: str
    created: int
    seq: int
    duration: str
    percent_off: float | None = None
    amount_off: int | None = None
    currency: str | None = None
    duration_in_months: int | None = None
    max_redemptions: int | None = None
    redeem_by: int | None = None
    name: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    times_redeemed: int = 0
    applies_to: list[str] | None = None
    currency_options: dict[str, dict[str, int]] | None = None
    livemode: bool = False
    deleted: bool = False

    def valid_at(self, now: float) -> bool:
        """Stripe's `valid`: not deleted, not past `redeem_by`, under `max_redemptions`."""
        return (
            not self.deleted
            and (self.redeem_by is None or now < self.redeem_by)
            and (self.max_redemptions is None or self.times_redeemed < self.max_redemptions)
        )


def apply_metadata(current: dict[str, str], update: dict[str, str] | None) -> dict[str, str]:
    """Stripe's metadata update: `""` for a key unsets it, `metadata=""` clears all."""
    if update is None:
        return {}
    merged = dict(current)
    for key, value in update.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


class Coupons(Collection[CouponRecord]):
    """`/v1/coupons`."""

    kind = "coupon"
    path = "/v1/coupons"
    expandable = frozenset({"applies_to", "currency_options"})

    def render(
        self, record: CouponRecord, api_version: str, expand: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": record.id,
            "object": "coupon",
            "amount_off": record.amount_off,
            "created": record.created,
            "currency": record.currency,
            "duration": record.duration,
            "duration_in_months": record.duration_in_months,
            "livemode": record.livemode,
            "max_redemptions": record.max_redemptions,
            "metadata": dict(record.metadata),
            "name": record.name,
            "percent_off": record.percent_off,
            "redeem_by": record.redeem_by,
            "times_redeemed": record.times_redeemed,
            "valid": record.valid_at(self.account.clock.now()),
        }
        if "applies_to" in expand:
            body["applies_to"] = {"products": list(record.applies_to or [])}
        if "currency_options" in expand:
            options = dict(record.currency_options or {})
            if record.currency and record.amount_off is not None:
                options.setdefault(record.currency, {"amount_off": record.amount_off})
            body["currency_options"] = {k: dict(v) for k, v in options.items()}
        return self.with_extra_fields(body)

    def create(self, params: Mapping[str, Any], ctx: RequestContext) -> dict[str, Any]:
        parsed = p.parse(params, CREATE_SPEC)
        now = self.account.clock.now()
        percent_off, amount_off = parsed.get("percent_off"), parsed.get("amount_off")
        if (percent_off is None) == (amount_off is None):
            raise invalid(
                "You must specify exactly one of percent_off or amount_off.",
                "percent_off" if percent_off is None else "amount_off",
            )
        currency = parsed.get("currency")
        if amount_off is not None and currency is None:
            raise invalid("You must specify currency when using amount_off.", "currency")
        if percent_off is not None and currency is not None:
            raise invalid("currency can only be set when using amount_off.", "currency")
        duration = parsed.get("duration") or "once"
        months = parsed.get("duration_in_months")
        if duration == "repeating" and months is None:
            raise invalid(
                "duration_in_months is required when duration is repeating.",
                "duration_in_months",
                "parameter_missing",
            )
        if duration != "repeating" and months is not None:
            raise invalid(
                "duration_in_months can only be set when duration is repeating.",
                "duration_in_months",
            )
        redeem_by = parsed.get("redeem_by")
        if redeem_by is not None and redeem_by <= now:
            raise invalid("Date must be in the future: redeem_by.", "redeem_by")
        options = parsed.get("currency_options")
        if options and amount_off is None:
            raise invalid(
                "currency_options can only be set when using amount_off.", "currency_options"
            )
        applies_to = (parsed.get("applies_to") or {}).get("products")
        for product_id in applies_to or []:
            self.account.products.live(product_id, "applies_to[products]")
        coupon_id = parsed.get("id")
        if coupon_id is None:
            coupon_id = self.account.new_id("", 8, upper=True)
        elif not COUPON_ID.match(coupon_id):
            raise invalid(f"Invalid coupon id: {coupon_id}", "id")
        if coupon_id in self.index:
            raise StripeError(
                400, "Coupon already exists.", code="resource_already_exists", param="id"
            )
        record = self.insert(
            CouponRecord(
                id=coupon_id,
                created=int(now),
                seq=self.account.next_seq(),
                duration=duration,
                percent_off=percent_off,
                amount_off=amount_off,
                currency=currency,
                duration_in_months=months,
                max_redemptions=parsed.get("max_redemptions"),
                redeem_by=redeem_by,
                name=parsed.get("name"),
                metadata=apply_metadata({}, parsed.get("metadata") or {}),
                applies_to=applies_to,
                currency_options={k: dict(v) for k, v in (options or {}).items()} or None,
                livemode=self.account.livemode,
            )
        )
        self.record_event("created", record, ctx)
        return self.render(record, ctx.api_version, self._expansions(parsed.get("expand", [])))

    def update(
        self, object_id: str, params: Mapping[str, Any], ctx: RequestContext
    ) -> dict[str, Any]:
        parsed = p.parse(params, UPDATE_SPEC)
        record = self.live(object_id)
        if parsed.get("currency_options") and record.amount_off is None:
            raise invalid(
                "currency_options can only be set when using amount_off.", "currency_options"
            )
        before = self.render_current(record)
        if "name" in parsed:
            record.name = parsed["name"]
        if "metadata" in parsed:
            record.metadata = apply_metadata(record.metadata, parsed["metadata"])
        if "currency_options" in parsed:
            merged = dict(record.currency_options or {})
            merged.update(parsed["currency_options"] or {})
            record.currency_options = merged or None
        if self.render_current(record) != before:
            self.record_event("updated", record, ctx, before)
        return self.render(record, ctx.api_version, self._expansions(parsed.get("expand", [])))

    def delete(
        self, object_id: str, params: Mapping[str, Any], ctx: RequestContext
    ) -> dict[str, Any]:
        p.parse(params, {})
        record = self.live(object_id)
        self.record_event("deleted", record, ctx)
        record.deleted = True
        self.index.remove(record.id)
        return {"id": record.id, "object": "coupon", "deleted": True}

    def redeem(self, record: CouponRecord, ctx: RequestContext | None) -> None:
        """One more redemption (through a promotion code or directly)."""
        if not record.valid_at(self.account.clock.now()):
            raise invalid(f"Coupon {record.id} is no longer valid.", "coupon", "coupon_expired")
        before = self.render_current(record)
        record.times_redeemed += 1
        self.record_event("updated", record, ctx, before)
