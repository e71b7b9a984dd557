"""The model-based test's machinery: drive the emulator, run the pipeline, compare.

The oracle is Stripe itself (the emulator's state); the model only remembers what the
pipeline was told by hand (soft deletes) and which changes it could not have seen yet.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

import stripe
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from stripe_emulator import Account
from stripe_emulator.server import EmulatorServer
from stripe_promotions import SyncRequest
from tests.support import Warehouse, as_json, setup_client

DAY = 24 * 3600
KINDS = ("coupon", "product", "promotion_code")
TABLES = {"coupon": "coupons", "product": "products", "promotion_code": "promotion_codes"}
OLD_VERSION, NEW_VERSION = "2024-06-20", "2026-10-28.endive"

# Fields compared between Stripe's object and the current-state row.
FIELDS = {
    "coupon": (
        "name", "metadata", "percent_off", "amount_off", "currency", "duration",
        "duration_in_months", "max_redemptions", "redeem_by", "times_redeemed", "valid",
    ),
    "product": ("name", "active", "metadata", "description", "updated", "type", "url"),
    "promotion_code": (
        "code", "active", "coupon_id", "times_redeemed", "max_redemptions", "expires_at",
        "metadata", "customer",
    ),
}  # fmt: skip
TIMES = {"redeem_by", "updated", "expires_at"}


def expected(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """What the current-state row must hold for Stripe's object."""
    values = {f: obj.get(f) for f in FIELDS[kind] if f != "coupon_id"}
    if kind == "promotion_code":
        values["coupon_id"] = obj["promotion"]["coupon"]
    return values


def actual(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    """The row's values in Stripe's terms (epoch seconds, parsed JSON)."""
    values = {}
    for name in FIELDS[kind]:
        value = row.get(name)
        if name in TIMES and isinstance(value, datetime):
            value = int(value.timestamp())
        elif name == "metadata":
            value = as_json(value)
        values[name] = value
    return values


class StripeModel(RuleBasedStateMachine):
    """Random changes in Stripe interleaved with pipeline runs in every mode."""

    make_warehouse: Callable[[str], Warehouse]  # set by the test: a fresh destination per run

    def __init__(self) -> None:
        super().__init__()
        self.server = EmulatorServer().start()
        self.account: Account = self.server.account
        self.sdk = {
            version: setup_client(self.server.url, version)
            for version in (OLD_VERSION, NEW_VERSION)
        }
        self.warehouse = self.make_warehouse(self.server.url)
        self.counter = 0
        self.soft_deleted: dict[tuple[str, str], bool] = {}  # -> changed since
        self.loaded = False
        # Hand-made deletions are stamped with Stripe's clock as the last run measured it: the
        # emulator's clock jumps, real clocks do not, so only soft-delete with a fresh reading.
        self.clock_fresh = False

    def teardown(self) -> None:
        self.server.stop()

    # -- helpers ------------------------------------------------------------------------------
    def state(self, kind: str) -> dict[str, dict[str, Any]]:
        """Stripe's objects now, always in today's shape."""
        return self.account.state(kind, NEW_VERSION)

    def live(self, kind: str) -> list[str]:
        return sorted(self.state(kind))

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def changed(self, kind: str, object_id: str) -> None:
        if (kind, object_id) in self.soft_deleted:
            self.soft_deleted[(kind, object_id)] = True

    @property
    def client(self) -> stripe.StripeClient:
        return self.sdk[NEW_VERSION]

    # -- changes in Stripe --------------------------------------------------------------------
    @rule(
        percent=st.booleans(),
        currency=st.sampled_from(["usd", "eur", "jpy"]),
        max_redemptions=st.none() | st.integers(1, 2),
        redeem_in_days=st.none() | st.integers(1, 40),
    )
    def create_coupon(
        self, percent: bool, currency: str, max_redemptions: int | None, redeem_in_days: int | None
    ) -> None:
        params: Any = {"id": self.name("CPN"), "duration": "once"}
        if percent:
            params["percent_off"] = 12.5
        else:
            params.update(amount_off=500, currency=currency)
        if max_redemptions:
            params["max_redemptions"] = max_redemptions
        if redeem_in_days:
            params["redeem_by"] = int(self.account.clock.now()) + redeem_in_days * DAY
        self.client.v1.coupons.create(params=params)

    @precondition(lambda self: self.live("coupon"))
    @rule(data=st.data(), rename=st.booleans())
    def update_coupon(self, data: st.DataObject, rename: bool) -> None:
        coupon_id = data.draw(st.sampled_from(self.live("coupon")))
        params: Any = {"name": self.name("n")} if rename else {"metadata": {"k": self.name("v")}}
        self.client.v1.coupons.update(coupon_id, params=params)
        self.changed("coupon", coupon_id)

    @precondition(lambda self: self.live("coupon"))
    @rule(data=st.data())
    def delete_coupon(self, data: st.DataObject) -> None:
        coupon_id = data.draw(st.sampled_from(self.live("coupon")))
        self.client.v1.coupons.delete(coupon_id)
        self.changed("coupon", coupon_id)

    @rule(archived=st.booleans())
    def create_product(self, archived: bool) -> None:
        params: Any = {"name": self.name("Product "), "active": not archived}
        self.client.v1.products.create(params=params)

    @precondition(lambda self: self.live("product"))
    @rule(data=st.data(), field=st.sampled_from(["active", "name", "metadata"]))
    def update_product(self, data: st.DataObject, field: str) -> None:
        product_id = data.draw(st.sampled_from(self.live("product")))
        current = self.state("product")[product_id]
        value = {
            "active": not current["active"],
            "name": self.name("Renamed "),
            "metadata": {"sku": self.name("s")},
        }[field]
        params: Any = {field: value}
        self.client.v1.products.update(product_id, params=params)
        self.changed("product", product_id)

    @precondition(lambda self: self.live("product"))
    @rule(data=st.data())
    def delete_product(self, data: st.DataObject) -> None:
        product_id = data.draw(st.sampled_from(self.live("product")))
        self.client.v1.products.delete(product_id)
        self.changed("product", product_id)

    @precondition(lambda self: any(c["valid"] for c in self.state("coupon").values()))
    @rule(data=st.data(), old_api=st.booleans(), expires_in_days=st.none() | st.integers(1, 40))
    def create_code(self, data: st.DataObject, old_api: bool, expires_in_days: int | None) -> None:
        valid = sorted(i for i, c in self.state("coupon").items() if c["valid"])
        coupon = self.state("coupon")[data.draw(st.sampled_from(valid))]
        params: Any = {"code": self.name("CODE")}
        if expires_in_days and coupon["redeem_by"] is None:
            params["expires_at"] = int(self.account.clock.now()) + expires_in_days * DAY
        if old_api:
            params["coupon"] = coupon["id"]
        else:
            params["promotion"] = {"type": "coupon", "coupon": coupon["id"]}
        self.sdk[OLD_VERSION if old_api else NEW_VERSION].v1.promotion_codes.create(params=params)

    @precondition(lambda self: self.live("promotion_code"))
    @rule(data=st.data())
    def toggle_code(self, data: st.DataObject) -> None:
        codes = self.state("promotion_code")
        code_id = data.draw(st.sampled_from(sorted(codes)))
        try:
            self.client.v1.promotion_codes.update(
                code_id, params={"active": not codes[code_id]["active"]}
            )
        except stripe.InvalidRequestError:
            return  # reactivating a code whose coupon is no longer valid: Stripe says no
        self.changed("promotion_code", code_id)

    @precondition(lambda self: any(c["active"] for c in self.state("promotion_code").values()))
    @rule(data=st.data())
    def redeem_code(self, data: st.DataObject) -> None:
        codes = self.state("promotion_code")
        code_id = data.draw(st.sampled_from(sorted(i for i, c in codes.items() if c["active"])))
        try:
            self.account.redeem(code_id)
        except Exception:
            return  # expired or exhausted: nothing happened
        self.changed("promotion_code", code_id)
        self.changed("coupon", codes[code_id]["promotion"]["coupon"])

    @rule(seconds=st.sampled_from([1, 3, 600, DAY, 31 * DAY]))
    def advance_clock(self, seconds: int) -> None:
        self.account.advance_clock(seconds)
        self.clock_fresh = False

    @rule(delay=st.sampled_from([0, 0, 2]))
    def event_delay(self, delay: int) -> None:
        self.account.set_event_delay(delay)

    @rule(version=st.sampled_from([OLD_VERSION, NEW_VERSION]))
    def account_api_version(self, version: str) -> None:
        self.account.set_api_version(version)

    # -- pipeline runs --------------------------------------------------------------------------
    @rule()
    def incremental_run(self) -> None:
        pending = self.invisible_changes()
        self.warehouse.run()
        self.loaded = self.clock_fresh = True
        for key, changed in list(self.soft_deleted.items()):
            if changed and key[1] not in pending:
                del self.soft_deleted[key]
        self.check(KINDS, skip=pending)

    @precondition(lambda self: self.loaded)
    @rule(kinds=st.sets(st.sampled_from(KINDS), min_size=1))
    def sync_all(self, kinds: set[str]) -> None:
        pending = self.invisible_changes()
        self.warehouse.run(SyncRequest("sync_all", tuple(sorted(kinds))))
        self.clock_fresh = True
        for key in list(self.soft_deleted):
            if key[0] in kinds:
                del self.soft_deleted[key]
        self.check(tuple(sorted(kinds)), skip=pending, listed=True)

    @precondition(lambda self: self.loaded)
    @rule(data=st.data(), kind=st.sampled_from(KINDS))
    def sync_by_ids(self, data: st.DataObject, kind: str) -> None:
        known = sorted(self.state(kind)) + sorted(self.account.deleted_ids(kind))
        ids = data.draw(st.lists(st.sampled_from(known), max_size=3)) if known else []
        unknown = self.name("nope_")  # a typo: Stripe and the pipeline never knew it
        seen = set(self.warehouse.current(TABLES[kind]))
        self.warehouse.run(SyncRequest("sync_by_ids", (kind,), ids=(*ids, unknown)))
        for object_id in ids:
            self.soft_deleted.pop((kind, object_id), None)
        rows = self.warehouse.current(TABLES[kind])
        assert unknown not in rows
        state = self.state(kind)
        for object_id in ids:
            if object_id in state:
                assert rows[object_id]["is_deleted"] is False
            elif object_id in seen:
                assert rows[object_id]["is_deleted"] is True
            else:  # deleted before the pipeline saw it: a 404 for it is no record (its event is)
                assert object_id not in rows

    @precondition(lambda self: self.loaded)
    @rule(data=st.data(), kind=st.sampled_from(KINDS), replay_events=st.booleans())
    def sync_batch(self, data: st.DataObject, kind: str, replay_events: bool) -> None:
        if replay_events:
            # Saved webhooks, old ones included: older events never replace newer state.
            events = [
                self.account.events.render(r, "")
                for r in self.account.events.live_records()
                if r.type.startswith(kind + ".")
            ]
            items = (
                data.draw(
                    st.lists(st.sampled_from(events), max_size=4, unique_by=lambda e: e["id"])
                )
                if events
                else []
            )
        else:
            state = self.state(kind)
            chosen = (
                data.draw(st.lists(st.sampled_from(sorted(state)), max_size=3, unique=True))
                if state
                else []
            )
            items = [state[i] for i in chosen]
            if data.draw(st.booleans()):
                # Patches, as django-stripe's seeds send them: some of Stripe's fields only.
                items = [
                    {
                        "id": obj["id"],
                        **{k: obj[k] for k in data.draw(st.sets(st.sampled_from(sorted(obj))))},
                    }
                    for obj in items
                ]
            for object_id in chosen:
                self.soft_deleted.pop((kind, object_id), None)
        if items:
            self.warehouse.run(SyncRequest("sync_batch", (kind,), items=tuple(items)))

    @precondition(lambda self: self.clock_fresh)
    @rule(data=st.data(), kind=st.sampled_from(KINDS))
    def soft_delete(self, data: st.DataObject, kind: str) -> None:
        # Users soft-delete what they see in their tables.
        loaded = self.warehouse.current(TABLES[kind])
        candidates = sorted(i for i in self.live(kind) if i in loaded)
        if not candidates:
            return
        object_id = data.draw(st.sampled_from(candidates))
        self.warehouse.run(SyncRequest("soft_delete", (kind,), ids=(object_id,), reason="model"))
        self.soft_deleted[(kind, object_id)] = False
        assert self.warehouse.current(TABLES[kind])[object_id]["is_deleted"] is True

    # -- the oracle ---------------------------------------------------------------------------
    def invisible_changes(self) -> set[str]:
        """Objects with events Stripe does not list yet (eventual consistency)."""
        now = self.account.clock.now()
        return {
            str(r.data["object"]["id"])
            for r in self.account.events.records.values()
            if r.visible_at > now
        }

    def check(self, kinds: tuple[str, ...], *, skip: set[str], listed: bool = False) -> None:
        """Current-state tables equal Stripe's state for these kinds (invariant 1)."""
        for kind in kinds:
            rows = self.warehouse.rows(f"SELECT * FROM stripe.{TABLES[kind]}")
            ids = [row["id"] for row in rows]
            assert len(ids) == len(set(ids)), f"duplicated {kind} rows"
            table = {row["id"]: row for row in rows}
            state = self.state(kind)
            deleted = self.account.deleted_ids(kind)
            for object_id, obj in state.items():
                if object_id in skip:
                    continue
                assert object_id in table, f"{kind} {object_id} missing"
                row = table[object_id]
                manual = (kind, object_id) in self.soft_deleted
                assert row["is_deleted"] is manual, f"{kind} {object_id}: is_deleted {row}"
                assert actual(kind, row) == expected(kind, obj), f"{kind} {object_id}"
            for object_id, row in table.items():
                if object_id in skip or object_id in state:
                    continue
                assert object_id in deleted, object_id
                assert row["is_deleted"] is True, f"{kind} {object_id} deleted in Stripe"
                assert row["deleted_at"] is not None

    @invariant()
    def no_duplicates_in_raw_keys(self) -> None:
        if not self.loaded:
            return
        duplicated = self.warehouse.rows(
            "SELECT id, _observation_key, COUNT(*) AS n FROM stripe_raw.coupons "
            "GROUP BY id, _observation_key HAVING COUNT(*) > 1"
        )
        assert not duplicated


def profile() -> tuple[int, int]:
    """(examples, steps): CI-sized by default; MODEL_PROFILE=deep, or MODEL_EXAMPLES/MODEL_STEPS."""
    deep = os.environ.get("MODEL_PROFILE") == "deep"
    examples = int(os.environ.get("MODEL_EXAMPLES", 200 if deep else 6))
    return examples, int(os.environ.get("MODEL_STEPS", 40 if deep else 14))


def dump(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


__all__ = ["StripeModel", "Warehouse", "profile", "replace"]
