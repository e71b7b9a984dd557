"""The model-based test's machinery: drive the emulator, run the pipeline, compare.

The oracle is Stripe itself (the emulator's state); the model only remembers what the
pipeline was told by hand (soft deletes) and which changes it could not have seen yet.

The emulator is a Connect platform: the key's own account and a few connected accounts, each
with objects of its own (sometimes the same id as an object of another account). Changes land
in any account; runs read all of them (`accounts="all"`), the key's own only, or one; the verbs
act on one account (`account=`). One connected account per example may be disconnected or
deleted: runs that name it fail for it alone, and its rows stay as they were. The current-state
tables are compared per (account_id, id), in the accounts a run read; rows of the accounts it did
not read must not change. Every example ends with a run of every account (`teardown`).

The history tables (docs/HISTORY.md) are checked after every run too, in two ways.

Their shape, for every object: versions 1..n in order of `valid_from`, each ending where the
next begins (so none overlap), only the last `is_current` and open-ended, the current version
equal to the current-state row (but for `synced_at`, `observed_via` and the history's own
columns), and the same objects as the current-state table.

"As of": at each incremental run and sync all, the model records Stripe's state (`expected`,
and `is_deleted`) of every object in the accounts and types the run read, at T = Stripe's
second just after the run (nothing changes while a run reads, so the state held at T).
After every later run, the history's version holding at each recorded T (the documented
predicate, and `stripe.<t>_as_of(ts)` for the newest T) must equal it. Compared only where
the documented rules say the history must know:

- not an object whose change the run could not see yet (its event not listed: `pending`),
  nor one soft-deleted by hand (the tables show the soft delete, Stripe does not);
- not at a T in whose second a later change, batch or soft delete landed (a change of T's
  second is an event of T's second, which outranks the run's reads; batches and soft deletes
  are stamped with Stripe's clock as estimated, within a second or two), in that account;
- not before the pipeline has read the events of every change of the object (and of a
  code's coupon) up to T: until then a state a sync all showed rests on its listing, which a
  newer listing replaces (a deletion by absence moves to the newest listing's start);
- not an object whose state rests on reads alone: one a read showed again after a soft
  delete (no event says it came back), or one whose change's event the pipeline
  never read (changes before an account's first sync all, or before an events cursor past
  Stripe's retention), from the change on, until its next change or a first incremental
  run lists it as new (that `list` read is never re-read). A read-only version starts at its
  earliest surviving read, and a re-read of the same content replaces that read
  (docs/HISTORY.md, "What reads keep"), so its start may move later. A promotion code whose
  coupon rests on reads alone is left out too (its derived columns follow its coupon's
  history).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Collection
from dataclasses import replace
from datetime import datetime
from itertools import pairwise
from typing import Any

import stripe
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from stripe_emulator import Account
from stripe_emulator.account import AccountState
from stripe_emulator.server import EmulatorServer
from stripe_promotions import SyncRequest
from stripe_promotions.settings import EVENT_LAG_SECONDS
from stripe_promotions_pipeline import ObjectSync, RunError, RunResult, make_pipeline
from tests.support import Warehouse, as_json, setup_client

DAY = 24 * 3600
KINDS = ("coupon", "product", "promotion_code")
TABLES = {"coupon": "coupons", "product": "products", "promotion_code": "promotion_codes"}
OLD_VERSION, NEW_VERSION = "2024-06-20", "2026-10-28.endive"
# Connected accounts: connected before the first step, and at most (one more may connect).
CONNECTED_AT_START, CONNECTED_AT_MOST = 2, 3
# Which accounts a run reads: all of them, the key's own (no `accounts`), or one named.
SCOPES = ("all", "all", "own", "one")

Key = tuple[str, str]  # (account_id, id): the current-state tables' key
Change = tuple[str, str, str]  # (account_id, kind, id)
# An events cursor older than this makes an incremental run list everything (30 days of
# retention, less the source's margin of a day).
RELISTED_AFTER = 29 * DAY
# How far Stripe's clock as the pipeline estimates it (batches, soft deletes) may be behind.
ESTIMATE_ERROR = 2
# A history row's own columns, and those that say how and when the version was seen: the
# current version equals the current-state row in every other column (docs/HISTORY.md).
HISTORY_OWN = {
    "version", "valid_from", "valid_to", "is_current", "changed_fields", "changed_after",
    "event_id",
}  # fmt: skip
BOOKKEEPING = {"synced_at", "observed_via"}
Snapshot = dict[str, dict[Key, dict[str, Any]]]  # kind -> key -> compared values

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
# Columns derived as of Stripe's clock at the newest run of any account (one clock for all):
# a coupon's `valid` (redeem_by), a code's `active` (its coupon valid). A run of one account
# moves them in another's rows when a deadline passed (README, "The tables").
TIME_DRIVEN = {"coupon": ("valid",), "promotion_code": ("active",)}


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


def comparable(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    """What must not change in a row the run did not touch (its account not read): all but
    what Stripe's one clock changes (TIME_DRIVEN)."""
    values = {k: v for k, v in actual(kind, row).items() if k not in TIME_DRIVEN.get(kind, ())}
    return {**values, "is_deleted": row["is_deleted"], "deleted_at": row["deleted_at"]}


class StripeModel(RuleBasedStateMachine):
    """Random changes in Stripe interleaved with pipeline runs in every mode."""

    make_warehouse: Callable[[str], Warehouse]  # set by the test: a fresh destination per run

    def __init__(self) -> None:
        super().__init__()
        self.server = EmulatorServer().start()
        self.platform: Account = self.server.account
        self.sdk = {
            version: setup_client(self.server.url, version)
            for version in (OLD_VERSION, NEW_VERSION)
        }
        # The key's own account, as Stripe names it (GET /v1/account).
        self.own = self.client.v1.accounts.retrieve_current().id
        assert self.own == self.platform.id
        self.connected = [
            self.platform.add_connected_account().id for _ in range(CONNECTED_AT_START)
        ]
        self.gone: set[str] = set()  # disconnected or deleted: out of reach for good
        self.warehouse = self.make_warehouse(self.server.url)
        self.counter = 0
        # Soft deletes the tables must show: (account, kind, id) -> changed since. A soft delete
        # lasts until the pipeline observes the object in a later second (docs/OBSERVATIONS.md).
        self.soft_deleted: dict[Change, bool] = {}
        # What an account's next incremental run observes: objects changed since its events
        # were last read (a coupon with new events is read again, now), objects created since
        # its last incremental run (listed by `created`), and everything when it had none yet
        # or its events cursor is past Stripe's retention (listed in full).
        self.unread: set[Change] = set()
        self.unlisted: set[Change] = set()
        self.events_read: dict[str, float] = {}  # account -> Stripe's clock at its cursor
        self.had_incremental: set[str] = set()  # accounts an incremental run read
        self.loaded = False
        # The current-state tables as the last run left them (the warehouse changes only in runs).
        self.tables: dict[str, dict[Key, dict[str, Any]]] = {kind: {} for kind in KINDS}
        # Hand-made deletions are stamped with Stripe's clock as the last run measured it: the
        # emulator's clock jumps, real clocks do not, so only soft-delete with a fresh reading.
        self.clock_fresh = False
        # The history tables as the last run left them: kind -> key -> versions, oldest first.
        self.histories: dict[str, dict[Key, list[dict[str, Any]]]] = {k: {} for k in KINDS}
        # Stripe's state at the seconds runs observed it: (kind, key) -> T -> what "as of T"
        # must show (see the module docstring for what is left out, and why).
        self.recorded: dict[tuple[str, Key], dict[int, dict[str, Any]]] = {}
        # Changes whose event the pipeline has not read yet, since Stripe's second of the
        # first; and objects whose state rests on reads alone (their event was never read).
        self.unread_since: dict[Change, int] = {}
        self.read_only: set[Change] = set()
        self.last_change: dict[Change, int] = {}  # Stripe's second of each object's last change

    def teardown(self) -> None:
        try:
            if sys.exc_info()[0] is None:  # every step passed (else the failure is reported)
                self.converge()
        finally:
            self.server.stop()

    def converge(self) -> None:
        """The end of every example: every event listed, one run of every account, and the
        tables must equal Stripe's state in all of them (runs above may have read few)."""
        self.platform.set_event_delay(0)
        self.platform.advance_clock(3)  # past the longest delay the steps set
        self.incremental("all", self.reachable())

    # -- helpers ------------------------------------------------------------------------------
    def account(self, account_id: str) -> AccountState:
        """An account's state in the emulator: the platform's own, or a connected one."""
        if account_id == self.own:
            return self.platform
        return self.platform.connected_account(account_id)

    def known(self) -> list[str]:
        """Every account that ever held objects: the own and every connected one."""
        return [self.own, *self.connected]

    def reachable(self) -> list[str]:
        """The accounts the key can act on now."""
        return [a for a in self.known() if a not in self.gone]

    def state(self, kind: str, account_id: str) -> dict[str, dict[str, Any]]:
        """Stripe's objects now, always in today's shape."""
        return self.account(account_id).state(kind, NEW_VERSION)

    def live(self, kind: str, account_id: str) -> list[str]:
        return sorted(self.state(kind, account_id))

    def holding(
        self, kind: str, test: Callable[[dict[str, Any]], bool] = lambda obj: True
    ) -> list[str]:
        """Reachable accounts with a live object of a kind that passes `test`."""
        return [a for a in self.reachable() if any(test(o) for o in self.state(kind, a).values())]

    def foreign_ids(self, kind: str, account_id: str) -> list[str]:
        """Ids of other accounts' objects that this account never had: creating one there
        makes the same id in two accounts."""
        mine = set(self.state(kind, account_id)) | self.account(account_id).deleted_ids(kind)
        others = {
            object_id
            for other in self.known()
            if other != account_id
            for object_id in self.state(kind, other)
        }
        return sorted(others - mine)

    def options(self, account_id: str) -> stripe.RequestOptions:
        """The SDK's request options acting on an account (no header for the key's own)."""
        return {} if account_id == self.own else {"stripe_account": account_id}

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def changed(self, account_id: str, kind: str, object_id: str, *, created: bool = False) -> None:
        """A change in Stripe (an event): the next incremental run of the account reads it."""
        key = (account_id, kind, object_id)
        self.unread.add(key)
        if created:
            self.unlisted.add(key)
        if key in self.soft_deleted:
            self.soft_deleted[key] = True
        second = int(self.platform.clock.now())
        self.unread_since.setdefault(key, second)
        self.last_change[key] = second
        self.read_only.discard(key)
        self.forget(account_id, second)  # its event outranks reads of its second

    @property
    def client(self) -> stripe.StripeClient:
        return self.sdk[NEW_VERSION]

    # -- changes in Stripe --------------------------------------------------------------------
    @rule(
        data=st.data(),
        percent=st.booleans(),
        currency=st.sampled_from(["usd", "eur", "jpy"]),
        max_redemptions=st.none() | st.integers(1, 2),
        redeem_in_days=st.none() | st.integers(1, 40),
        reuse_id=st.booleans(),
    )
    def create_coupon(
        self,
        data: st.DataObject,
        percent: bool,
        currency: str,
        max_redemptions: int | None,
        redeem_in_days: int | None,
        reuse_id: bool,
    ) -> None:
        account = data.draw(st.sampled_from(self.reachable()), label="account")
        foreign = self.foreign_ids("coupon", account) if reuse_id else []
        coupon_id = data.draw(st.sampled_from(foreign)) if foreign else self.name("CPN")
        params: Any = {"id": coupon_id, "duration": "once"}
        if percent:
            params["percent_off"] = 12.5
        else:
            params.update(amount_off=500, currency=currency)
        if max_redemptions:
            params["max_redemptions"] = max_redemptions
        if redeem_in_days:
            params["redeem_by"] = int(self.platform.clock.now()) + redeem_in_days * DAY
        self.client.v1.coupons.create(params=params, options=self.options(account))
        self.changed(account, "coupon", coupon_id, created=True)

    @precondition(lambda self: self.holding("coupon"))
    @rule(data=st.data(), rename=st.booleans())
    def update_coupon(self, data: st.DataObject, rename: bool) -> None:
        account = data.draw(st.sampled_from(self.holding("coupon")), label="account")
        coupon_id = data.draw(st.sampled_from(self.live("coupon", account)))
        params: Any = {"name": self.name("n")} if rename else {"metadata": {"k": self.name("v")}}
        self.client.v1.coupons.update(coupon_id, params=params, options=self.options(account))
        self.changed(account, "coupon", coupon_id)

    @precondition(lambda self: self.holding("coupon"))
    @rule(data=st.data())
    def delete_coupon(self, data: st.DataObject) -> None:
        account = data.draw(st.sampled_from(self.holding("coupon")), label="account")
        coupon_id = data.draw(st.sampled_from(self.live("coupon", account)))
        self.client.v1.coupons.delete(coupon_id, options=self.options(account))
        self.changed(account, "coupon", coupon_id)

    @rule(data=st.data(), archived=st.booleans(), reuse_id=st.booleans())
    def create_product(self, data: st.DataObject, archived: bool, reuse_id: bool) -> None:
        account = data.draw(st.sampled_from(self.reachable()), label="account")
        params: Any = {"name": self.name("Product "), "active": not archived}
        foreign = self.foreign_ids("product", account) if reuse_id else []
        if foreign:
            params["id"] = data.draw(st.sampled_from(foreign))
        product = self.client.v1.products.create(params=params, options=self.options(account))
        self.changed(account, "product", product.id, created=True)

    @precondition(lambda self: self.holding("product"))
    @rule(data=st.data(), field=st.sampled_from(["active", "name", "metadata"]))
    def update_product(self, data: st.DataObject, field: str) -> None:
        account = data.draw(st.sampled_from(self.holding("product")), label="account")
        product_id = data.draw(st.sampled_from(self.live("product", account)))
        current = self.state("product", account)[product_id]
        value = {
            "active": not current["active"],
            "name": self.name("Renamed "),
            "metadata": {"sku": self.name("s")},
        }[field]
        params: Any = {field: value}
        self.client.v1.products.update(product_id, params=params, options=self.options(account))
        self.changed(account, "product", product_id)

    @precondition(lambda self: self.holding("product"))
    @rule(data=st.data())
    def delete_product(self, data: st.DataObject) -> None:
        account = data.draw(st.sampled_from(self.holding("product")), label="account")
        product_id = data.draw(st.sampled_from(self.live("product", account)))
        self.client.v1.products.delete(product_id, options=self.options(account))
        self.changed(account, "product", product_id)

    @precondition(lambda self: self.holding("coupon", lambda c: bool(c["valid"])))
    @rule(data=st.data(), old_api=st.booleans(), expires_in_days=st.none() | st.integers(1, 40))
    def create_code(self, data: st.DataObject, old_api: bool, expires_in_days: int | None) -> None:
        accounts = self.holding("coupon", lambda c: bool(c["valid"]))
        account = data.draw(st.sampled_from(accounts), label="account")
        coupons = self.state("coupon", account)
        valid = sorted(i for i, c in coupons.items() if c["valid"])
        coupon = coupons[data.draw(st.sampled_from(valid))]
        params: Any = {"code": self.name("CODE")}
        if expires_in_days and coupon["redeem_by"] is None:
            params["expires_at"] = int(self.platform.clock.now()) + expires_in_days * DAY
        if old_api:
            params["coupon"] = coupon["id"]
        else:
            params["promotion"] = {"type": "coupon", "coupon": coupon["id"]}
        sdk = self.sdk[OLD_VERSION if old_api else NEW_VERSION]
        code = sdk.v1.promotion_codes.create(params=params, options=self.options(account))
        self.changed(account, "promotion_code", code.id, created=True)

    @precondition(lambda self: self.holding("promotion_code"))
    @rule(data=st.data())
    def toggle_code(self, data: st.DataObject) -> None:
        account = data.draw(st.sampled_from(self.holding("promotion_code")), label="account")
        codes = self.state("promotion_code", account)
        code_id = data.draw(st.sampled_from(sorted(codes)))
        try:
            self.client.v1.promotion_codes.update(
                code_id,
                params={"active": not codes[code_id]["active"]},
                options=self.options(account),
            )
        except stripe.InvalidRequestError:
            return  # reactivating a code whose coupon is no longer valid: Stripe says no
        self.changed(account, "promotion_code", code_id)

    @precondition(lambda self: self.holding("promotion_code", lambda c: bool(c["active"])))
    @rule(data=st.data())
    def redeem_code(self, data: st.DataObject) -> None:
        accounts = self.holding("promotion_code", lambda c: bool(c["active"]))
        account = data.draw(st.sampled_from(accounts), label="account")
        codes = self.state("promotion_code", account)
        code_id = data.draw(st.sampled_from(sorted(i for i, c in codes.items() if c["active"])))
        try:
            self.account(account).redeem(code_id)
        except Exception:
            return  # expired or exhausted: nothing happened
        self.changed(account, "promotion_code", code_id)
        self.changed(account, "coupon", codes[code_id]["promotion"]["coupon"])

    @rule(seconds=st.sampled_from([1, 3, 600, DAY, 31 * DAY]))
    def advance_clock(self, seconds: int) -> None:
        self.platform.advance_clock(seconds)  # one clock for every account
        self.clock_fresh = False

    @rule(delay=st.sampled_from([0, 0, 2]))
    def event_delay(self, delay: int) -> None:
        self.platform.set_event_delay(delay)  # every account's events

    @rule(data=st.data(), version=st.sampled_from([OLD_VERSION, NEW_VERSION]))
    def account_api_version(self, data: st.DataObject, version: str) -> None:
        account = data.draw(st.sampled_from(self.reachable()), label="account")
        self.account(account).set_api_version(version)

    # -- Connect: accounts come and go ----------------------------------------------------------
    @precondition(lambda self: len(self.connected) < CONNECTED_AT_MOST)
    @rule()
    def connect_account(self) -> None:
        self.connected.append(self.platform.add_connected_account().id)

    @precondition(lambda self: not self.gone and len(self.reachable()) > 1)
    @rule(data=st.data(), delete=st.booleans())
    def lose_account(self, data: st.DataObject, delete: bool) -> None:
        """The account revokes the platform's access, or is deleted (one per example): runs
        cannot read it any more, and its rows keep what the last run that read it loaded."""
        account = data.draw(st.sampled_from(self.reachable()[1:]), label="account")
        if delete:
            self.platform.delete_connected_account(account)
        else:
            self.platform.disconnect_connected_account(account)
        self.gone.add(account)

    # -- pipeline runs --------------------------------------------------------------------------
    def observed(self, covered: Collection[str], pending: set[Key], now: float) -> None:
        """After an incremental run of these accounts: the soft deletes it observed a later
        state of are gone; what it read is read."""
        for account in covered:
            full = account not in self.had_incremental or (
                now - self.events_read.get(account, now) > RELISTED_AFTER
            )
            if now - self.events_read.get(account, now) > RELISTED_AFTER:
                self.lose_events(account)  # past retention: listed in full, events skipped
            else:  # events read (before a first cursor: the listing below covers them)
                self.anchored(account, pending)
            if account not in self.had_incremental:
                # Its first incremental run lists every live object as new (`list`): a read
                # that is never made again, so the version it shows keeps its start.
                self.read_only = {
                    k
                    for k in self.read_only
                    if k[0] != account or k[2] not in self.live(k[1], k[0])
                }
            for key, changed in list(self.soft_deleted.items()):
                if key[0] != account:
                    continue
                seen = (account, key[2]) not in pending  # its events are listed
                reread = key[1] == "coupon" and key in self.unread  # events omit fields
                if full or key in self.unlisted or (seen and (changed or reread)):
                    self.cleared(key, by_event=not full and seen and changed)
            # A run that starts the events cursor afresh (none yet, or past retention) sets it
            # to now with no event seen: the next run reads the last EVENT_LAG_SECONDS' events
            # as new, and reads those coupons again.
            reset = account not in self.events_read or (
                now - self.events_read[account] > RELISTED_AFTER
            )
            recent = int(now) - EVENT_LAG_SECONDS
            self.unread = {
                k
                for k in self.unread
                if k[0] != account
                or (not full and (k[0], k[2]) in pending)
                or (reset and self.last_change.get(k, 0) >= recent)
            }
            self.unlisted = {k for k in self.unlisted if k[0] != account}
            self.events_read[account] = now
            self.had_incremental.add(account)

    def scope(
        self, data: st.DataObject, scope: str
    ) -> tuple[str | tuple[str, ...] | None, list[str]]:
        """A run's `accounts` setting, and the accounts it reads."""
        if scope == "all":
            return "all", self.reachable()
        if scope == "own":
            return None, [self.own]
        account = data.draw(st.sampled_from(self.reachable()), label="account")
        return (account,), [account]

    def verb_target(self, data: st.DataObject) -> tuple[str | None, str]:
        """A verb's `account=` (None: the key's own by default), and the account it acts on."""
        account = data.draw(st.sampled_from(self.reachable()), label="account")
        if account == self.own and data.draw(st.booleans(), label="own by default"):
            return None, account
        return account, account

    def verb_settings(self) -> dict[str, Any]:
        """The warehouse's settings as keyword options of a verb (which picks the account)."""
        return {k: v for k, v in vars(self.warehouse.settings).items() if k != "accounts"}

    def finished(self, result: RunResult, covered: list[str]) -> None:
        """A run that read only reachable accounts: every one read, none failed."""
        assert not result.partly_failed, result.stats.failed_accounts
        assert sorted(result.stats.accounts) == sorted(covered), result.stats.accounts

    @rule(data=st.data(), scope=st.sampled_from(SCOPES))
    def incremental_run(self, data: st.DataObject, scope: str) -> None:
        self.incremental(*self.scope(data, scope))

    def incremental(self, accounts: str | tuple[str, ...] | None, covered: list[str]) -> None:
        """An incremental run of these accounts; the tables then equal Stripe's state in them."""
        pending = self.invisible_changes()
        now = self.platform.clock.now()
        before = self.snapshot()
        self.finished(self.warehouse.run(accounts=accounts), covered)
        self.loaded = self.clock_fresh = True
        self.reload()
        self.observed(covered, pending, now)
        self.check(KINDS, covered, skip=pending)
        self.unchanged(before, covered)
        self.remember(KINDS, covered, pending)

    @precondition(lambda self: self.loaded)
    @rule(
        data=st.data(),
        kinds=st.sets(st.sampled_from(KINDS), min_size=1),
        scope=st.sampled_from(SCOPES),
    )
    def sync_all(self, data: st.DataObject, kinds: set[str], scope: str) -> None:
        accounts, covered = self.scope(data, scope)
        pending = self.invisible_changes()
        now = self.platform.clock.now()
        before = self.snapshot()
        if len(kinds) == 1:  # the verb, with its `account=`
            account = accounts[0] if isinstance(accounts, tuple) else accounts
            [kind] = kinds
            result = ObjectSync(kind).sync_all(account=account, **self.verb_settings())
        else:
            result = self.warehouse.run(
                SyncRequest("sync_all", tuple(sorted(kinds))), accounts=accounts
            )
        self.finished(result, covered)
        self.clock_fresh = True
        self.reload()
        for key in list(self.soft_deleted):
            if key[0] in covered and key[1] in kinds:
                self.cleared(key)  # listed: observed now
        for account in covered:  # a first run of an account that lists sets its events cursor
            if account not in self.events_read:
                self.lose_events(account)  # changes before the cursor: their events go unread
            self.events_read.setdefault(account, now)
        self.check(tuple(sorted(kinds)), covered, skip=pending)
        self.unchanged(before, covered)
        self.remember(tuple(sorted(kinds)), covered, pending)

    @precondition(lambda self: self.loaded and self.gone)
    @rule(data=st.data())
    def run_naming_a_lost_account(self, data: st.DataObject) -> None:
        """A run naming a lost account: it fails for that account alone (all of the run if
        it is the only one), and leaves its rows as they were."""
        lost = data.draw(st.sampled_from(sorted(self.gone)), label="lost")
        others = data.draw(st.lists(st.sampled_from(self.reachable()), unique=True, max_size=2))
        pending = self.invisible_changes()
        now = self.platform.clock.now()
        before = self.snapshot()
        if not others:
            try:
                self.warehouse.run(accounts=(lost,))
            except RunError as error:
                assert lost in str(error), error
            else:
                raise AssertionError(f"a run of lost account {lost} succeeded")
            self.reload()
            self.unchanged(before, [])
            return
        result = self.warehouse.run(accounts=(*others, lost))
        assert result.partly_failed and set(result.stats.failed_accounts) == {lost}, result.stats
        self.loaded = self.clock_fresh = True
        self.reload()
        self.observed(others, pending, now)
        self.check(KINDS, others, skip=pending)
        self.unchanged(before, others)
        self.remember(KINDS, others, pending)

    @precondition(lambda self: self.loaded)
    @rule(data=st.data(), kind=st.sampled_from(KINDS))
    def sync_by_ids(self, data: st.DataObject, kind: str) -> None:
        named, account = self.verb_target(data)
        state = self.state(kind, account)
        # Its own ids (live or deleted), and other accounts' ids it never had: Stripe answers
        # 404 for those here, whatever the other account holds.
        choices = sorted(state) + sorted(self.account(account).deleted_ids(kind))
        choices += self.foreign_ids(kind, account)
        ids = data.draw(st.lists(st.sampled_from(choices), max_size=3)) if choices else []
        unknown = self.name("nope_")  # a typo: Stripe and the pipeline never knew it
        seen = set(self.rows_of(kind, account))
        before = self.snapshot()
        ObjectSync(kind).sync_by_ids((*ids, unknown), account=named, **self.verb_settings())
        self.reload()
        for object_id in ids:
            self.cleared((account, kind, object_id))
        rows = self.rows_of(kind, account)
        assert unknown not in rows
        for object_id in ids:
            if object_id in state:
                assert rows[object_id]["is_deleted"] is False
                assert actual(kind, rows[object_id]) == expected(kind, state[object_id])
            elif object_id in seen:
                assert rows[object_id]["is_deleted"] is True
            else:  # deleted before the pipeline saw it: a 404 for it is no record (its event is)
                assert object_id not in rows, f"{kind} {object_id} recorded in {account}"
        self.unchanged(before, [account])

    @precondition(lambda self: self.loaded)
    @rule(data=st.data(), kind=st.sampled_from(KINDS), replay_events=st.booleans())
    def sync_batch(self, data: st.DataObject, kind: str, replay_events: bool) -> None:
        named, account = self.verb_target(data)
        items: list[dict[str, Any]]
        if replay_events:
            # Saved webhooks, old ones included: older events never replace newer state.
            log = self.account(account).events
            events = [
                log.render(r, "") for r in log.live_records() if r.type.startswith(kind + ".")
            ]
            items = (
                data.draw(
                    st.lists(st.sampled_from(events), max_size=4, unique_by=lambda e: e["id"])
                )
                if events
                else []
            )
        else:
            state = self.state(kind, account)
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
            for item in items:
                key = (account, kind, item["id"])
                if "updated" in item and not self.soft_deleted.get(key, True):
                    continue  # a product is observed at its `updated`: before the soft delete
                self.cleared(key)  # observed now
        if items:
            before = self.snapshot()
            self.forget(account, int(self.platform.clock.now()) - ESTIMATE_ERROR)
            ObjectSync(kind).sync_batch(items, account=named, **self.verb_settings())
            self.reload()
            self.unchanged(before, [account])

    @precondition(lambda self: self.clock_fresh)
    @rule(data=st.data(), kind=st.sampled_from(KINDS))
    def soft_delete(self, data: st.DataObject, kind: str) -> None:
        # Users soft-delete what they see in their tables.
        named, account = self.verb_target(data)
        loaded = self.rows_of(kind, account)
        candidates = sorted(i for i in self.live(kind, account) if i in loaded)
        if not candidates:
            return
        object_id = data.draw(st.sampled_from(candidates))
        before = self.snapshot()
        self.forget(account, int(self.platform.clock.now()) - ESTIMATE_ERROR)
        ObjectSync(kind).soft_delete(
            object_id, reason="model", account=named, **self.verb_settings()
        )
        self.reload()
        self.soft_deleted[(account, kind, object_id)] = False
        assert self.rows_of(kind, account)[object_id]["is_deleted"] is True
        self.unchanged(before, [account])

    # -- the history: its shape, and "as of" ----------------------------------------------------
    def forget(self, account: str, second: int) -> None:
        """Recorded states of an account at `second` or later are no longer exact: something
        observed at or before them changed after the run that recorded them."""
        for (_, key), states in self.recorded.items():
            if key[0] == account:
                for at in [at for at in states if at >= second]:
                    del states[at]

    def cleared(self, key: Change, *, by_event: bool = False) -> None:
        """A soft delete the pipeline observed a later state of: by a read, the object then
        rests on reads (no event says it came back) until its next change."""
        if self.soft_deleted.pop(key, None) is not None and not by_event:
            self.read_only.add(key)

    def lose_events(self, account: str) -> None:
        """The account's unread events will never be read: those objects rest on reads from
        their change on (states recorded since are no longer exact)."""
        for change, since in list(self.unread_since.items()):
            if change[0] == account:
                del self.unread_since[change]
                self.read_only.add(change)
                states = self.recorded.get((change[1], (account, change[2])), {})
                for at in [at for at in states if at >= since]:
                    del states[at]

    def anchored(self, account: str, pending: set[Key]) -> None:
        """The account's events were read, but for those not listed yet (`pending`)."""
        for change in list(self.unread_since):
            if change[0] == account and (account, change[2]) not in pending:
                del self.unread_since[change]

    def remember(self, kinds: Collection[str], covered: Collection[str], pending: set[Key]) -> None:
        """After a run read these accounts and kinds: Stripe's state at this second, for "as
        of" (module docstring: what is left out)."""
        at = int(self.platform.clock.now())
        for kind in kinds:
            for account in covered:
                rows = self.rows_of(kind, account)
                states: dict[str, dict[str, Any]] = {
                    i: {**expected(kind, obj), "is_deleted": False}
                    for i, obj in self.state(kind, account).items()
                }
                states.update(
                    (i, {"is_deleted": True})
                    for i in self.account(account).deleted_ids(kind)
                    if i in rows
                )
                for object_id, state in states.items():
                    change = (account, kind, object_id)
                    coupon = state.get("coupon_id")
                    if (
                        (account, object_id) in pending
                        or change in self.soft_deleted
                        or change in self.read_only
                        or (coupon and (account, "coupon", coupon) in self.read_only)
                    ):
                        continue
                    self.recorded.setdefault((kind, (account, object_id)), {})[at] = state

    def settled(self, kind: str, key: Key, at: int, state: dict[str, Any]) -> bool:
        """Whether the pipeline has read the events of every change up to `at` of the object
        (and of a code's coupon): until then its state at `at` rests on reads (a listing
        that a newer one replaces, an absence from a listing that a newer one moves)."""
        changes = [(key[0], kind, key[1])]
        if state.get("coupon_id"):
            changes.append((key[0], "coupon", state["coupon_id"]))
        return all(self.unread_since.get(change, at + 1) > at for change in changes)

    def check_history(self) -> None:
        """Every object's versions: numbered 1..n in order, contiguous, the last one current
        and equal to the current-state row (docs/HISTORY.md)."""
        for kind in KINDS:
            history, table = self.histories[kind], self.table(kind)
            assert history.keys() == table.keys(), f"{kind}: history and table differ in objects"
            for key, versions in history.items():
                assert [v["version"] for v in versions] == list(range(1, len(versions) + 1))
                for older, newer in pairwise(versions):
                    assert older["valid_to"] == newer["valid_from"], f"{kind} {key}: a gap"
                    assert older["valid_from"] <= older["valid_to"], f"{kind} {key}: reversed"
                    assert older["is_current"] is False, f"{kind} {key}: two current"
                last = versions[-1]
                assert last["is_current"] is True and last["valid_to"] is None, f"{kind} {key}"
                row = table[key]
                differ = {
                    name: (row[name], last[name])
                    for name in row.keys() - BOOKKEEPING - HISTORY_OWN
                    if row[name] != last[name]
                }
                assert not differ, f"{kind} {key}: current version differs {differ}"

    def check_as_of(self, query: Callable[[str], list[dict[str, Any]]]) -> None:
        """The version holding at each recorded second equals Stripe's state then."""
        for kind, table in TABLES.items():
            recorded = {
                key: states for (k, key), states in self.recorded.items() if k == kind and states
            }
            seconds = sorted({at for states in recorded.values() for at in states})
            if not seconds:
                continue
            values = ", ".join(f"({at})" for at in seconds)
            rows = query(
                f"SELECT t.seen_at, h.* FROM stripe.{table}_history AS h "
                f"JOIN (VALUES {values}) AS t(seen_at) ON h.valid_from <= to_timestamp(t.seen_at) "
                "AND (h.valid_to IS NULL OR h.valid_to > to_timestamp(t.seen_at))"
            )
            holding: dict[tuple[int, Key], dict[str, Any]] = {}
            for row in rows:
                found = (int(row["seen_at"]), (row["account_id"], row["id"]))
                assert found not in holding, f"{kind} {found}: two versions hold at once"
                holding[found] = row
            newest = seconds[-1]
            macro = query(
                f"SELECT account_id, id, version FROM stripe.{table}_as_of(to_timestamp({newest}))"
            )
            assert {(r["account_id"], r["id"], r["version"]) for r in macro} == {
                (*key, row["version"]) for (at, key), row in holding.items() if at == newest
            }, f"{kind}: {table}_as_of differs from the predicate"
            for key, states in recorded.items():
                for at, state in states.items():
                    if not self.settled(kind, key, at, state):
                        continue
                    held = holding.get((at, key))
                    assert held is not None, f"{kind} {key} as of {at}: no version"
                    assert held["is_deleted"] is state["is_deleted"], f"{kind} {key} as of {at}"
                    if not state["is_deleted"]:
                        seen = {**actual(kind, held), "is_deleted": False}
                        assert seen == state, f"{kind} {key} as of {at}: {seen} != {state}"

    # -- the oracle ---------------------------------------------------------------------------
    def invisible_changes(self) -> set[Key]:
        """Objects with events Stripe does not list yet (eventual consistency), per account."""
        now = self.platform.clock.now()
        return {
            (account, str(r.data["object"]["id"]))
            for account in self.known()
            for r in self.account(account).events.records.values()
            if r.visible_at > now
        }

    def reload(self) -> None:
        """After a run: read the current-state tables by (account_id, id), each key once, and
        check the raw tables' keys (one connection: every check reads this copy)."""
        client = make_pipeline(self.warehouse.settings).sql_client()
        with client:

            def query(sql: str) -> list[dict[str, Any]]:
                with client.execute_query(sql) as cursor:
                    names = [c[0] for c in cursor.description]
                    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

            for kind, table in TABLES.items():
                rows = query(f"SELECT * FROM stripe.{table}")
                keys = [(row["account_id"], row["id"]) for row in rows]
                assert len(keys) == len(set(keys)), f"duplicated {kind} rows"
                assert {a for a, _ in keys} <= set(self.known()), f"{kind} rows of unknown accounts"
                self.tables[kind] = dict(zip(keys, rows, strict=True))
                duplicated = query(
                    "SELECT account_id, id, _observation_key, COUNT(*) AS n "
                    f"FROM stripe_raw.{table} GROUP BY account_id, id, _observation_key "
                    "HAVING COUNT(*) > 1 OR account_id IS NULL"
                )
                assert not duplicated, f"raw {table}: {duplicated}"
                versions: dict[Key, list[dict[str, Any]]] = {}
                for row in query(f"SELECT * FROM stripe.{table}_history ORDER BY version"):
                    versions.setdefault((row["account_id"], row["id"]), []).append(row)
                self.histories[kind] = versions
            self.check_history()
            self.check_as_of(query)

    def table(self, kind: str) -> dict[Key, dict[str, Any]]:
        """A current-state table by (account_id, id), as the last run left it."""
        return self.tables[kind]

    def rows_of(self, kind: str, account_id: str) -> dict[str, dict[str, Any]]:
        """One account's rows of a current-state table, by id."""
        return {i: row for (a, i), row in self.table(kind).items() if a == account_id}

    def snapshot(self) -> Snapshot:
        """The compared values of every row, to hold runs to the accounts they read."""
        return {
            kind: {key: comparable(kind, row) for key, row in self.table(kind).items()}
            for kind in KINDS
        }

    def unchanged(self, before: Snapshot, covered: Collection[str]) -> None:
        """Rows of accounts a run did not read (lost ones among them) are as they were."""
        after = self.snapshot()
        for kind in KINDS:
            for key in before[kind].keys() | after[kind].keys():
                if key[0] not in covered:
                    assert before[kind].get(key) == after[kind].get(key), f"{kind} {key} changed"

    def check(self, kinds: tuple[str, ...], covered: Collection[str], *, skip: set[Key]) -> None:
        """Current-state tables equal Stripe's state for these kinds, in the accounts a run
        read (invariant 1, per (account_id, id))."""
        for kind in kinds:
            table = self.table(kind)
            for account in covered:
                state = self.state(kind, account)
                deleted = self.account(account).deleted_ids(kind)
                for object_id, obj in state.items():
                    key = (account, object_id)
                    if key in skip:
                        continue
                    assert key in table, f"{kind} {key} missing"
                    row = table[key]
                    manual = (account, kind, object_id) in self.soft_deleted
                    assert row["is_deleted"] is manual, f"{kind} {key}: is_deleted {row}"
                    seen, wanted = actual(kind, row), expected(kind, obj)
                    if manual and kind == "coupon":
                        wanted["valid"] = False  # `valid`: not deleted, soft deletes included
                    if (
                        kind == "promotion_code"
                        and (account, "coupon", obj["promotion"]["coupon"]) in self.soft_deleted
                    ):
                        wanted["active"] = False  # its coupon soft-deleted: not valid
                    assert seen == wanted, f"{kind} {key}: {seen} != {wanted} ({row})"
                for key, row in table.items():
                    if key[0] != account or key in skip or key[1] in state:
                        continue
                    assert key[1] in deleted, f"{kind} {key} never existed in Stripe"
                    assert row["is_deleted"] is True, f"{kind} {key} deleted in Stripe"
                    assert row["deleted_at"] is not None


def profile() -> tuple[int, int]:
    """(examples, steps): CI-sized by default; MODEL_PROFILE=deep, or MODEL_EXAMPLES/MODEL_STEPS."""
    deep = os.environ.get("MODEL_PROFILE") == "deep"
    examples = int(os.environ.get("MODEL_EXAMPLES", 200 if deep else 6))
    return examples, int(os.environ.get("MODEL_STEPS", 40 if deep else 14))


def dump(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


__all__ = ["StripeModel", "Warehouse", "profile", "replace"]
