"""The emulated Stripe accounts: all state and rules, and the Python API tests drive.

`AccountState` is one Stripe account's objects and rules; `Account` is the account the API
keys belong to (a Connect platform once it has connected accounts) with everything that is
per key or per emulator (faults, rate limits, keys, settings); `ConnectedAccount` is one of
its connected accounts, an account of its own sharing the platform's clock and lock.
"""

from __future__ import annotations

import datetime
import itertools
import random
import re
import string
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

from . import params as p
from .auth import KeyRing
from .clock import Clock
from .collection import Collection, RequestContext
from .connected_accounts import (
    AccountProfile,
    Accounts,
    AccountType,
    ConnectHeaders,
    Status,
    budget_of,
    check_new_id,
    resolve,
)
from .coupons import Coupons
from .errors import StripeError, missing
from .events import Events
from .faults import Faults
from .products import Products
from .promotion_codes import PromotionCodes
from .rate_limits import RateLimits

DEFAULT_API_VERSION = "2026-10-28.endive"
VERSION_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")
OPERATIONS = ("list", "create", "retrieve", "update", "delete")
PLATFORM_ID = "acct_1EmulatorPlatfrm"
SameSecondOrder = Literal["insertion", "shuffled"]


def check_api_version(version: str) -> str:
    """Stripe's 400 for a `Stripe-Version` it does not know."""
    if not VERSION_FORMAT.match(version) or not _is_date(version[:10]):
        raise StripeError(400, f"Invalid Stripe API version: {version}", param="Stripe-Version")
    return version


def _is_date(text: str) -> bool:
    """Whether `text` (YYYY-MM-DD) is a real calendar day: no version is dated 2024-13-45."""
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


@dataclass
class Shared:
    """Settings every account of one emulator follows: the platform's controls set them."""

    same_second_order: SameSecondOrder = "insertion"
    # Fields merged into every rendered object of a kind (schema drift): set_extra_fields.
    extra_fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Emulated seconds before a new event is listed or retrievable: set_event_delay.
    event_delay: float = 0.0

    def reset(self) -> None:
        """Insertion order, no extra fields, no event delay."""
        self.same_second_order = "insertion"
        self.extra_fields = {}
        self.event_delay = 0.0


class AccountState:
    """One Stripe account's objects, events, ids and API versions, and the rules on them.

    Every public method is safe to call from any thread (the lock is the platform's).
    """

    def __init__(
        self,
        *,
        account_id: str,
        api_version: str,
        livemode: bool,
        clock: Clock,
        lock: threading.RLock,
        shared: Shared,
        profile: AccountProfile | None = None,
        id_seed: int | str = 0,
    ) -> None:
        self.id = account_id
        self.lock = lock
        self.clock = clock
        self.shared = shared
        self.livemode = livemode
        self.profile = profile or AccountProfile()
        self.created = clock.timestamp()
        self.seq = 0
        self.status: Status = "connected"
        self._id_seed = id_seed
        self._default_version = check_api_version(api_version)
        self._init_state()

    def _init_state(self) -> None:
        self._rng = random.Random(self._id_seed)
        self._seq = itertools.count()
        self._shuffle = random.Random(1)  # apart from ids, so ids stay the same either way
        self._versions: list[tuple[float, str]] = [(float("-inf"), self._default_version)]
        # Responses by Idempotency-Key (status, body), replayed for a repeated POST.
        self.idempotency: dict[str, tuple[int, dict[str, Any]]] = {}
        self.coupons = Coupons(self)
        self.products = Products(self)
        self.promotion_codes = PromotionCodes(self)
        self.events = Events(self)
        # `/v1/accounts`: this account's connected accounts (none unless it is a platform).
        self.accounts = Accounts(self)
        self.collections: dict[str, Collection[Any]] = {
            c.path.rsplit("/", 1)[-1]: c
            for c in (self.coupons, self.products, self.promotion_codes, self.events, self.accounts)
        }

    @property
    def same_second_order(self) -> SameSecondOrder:
        """The order of objects created within one second (the emulator's setting)."""
        return self.shared.same_second_order

    @property
    def extra_fields(self) -> dict[str, dict[str, Any]]:
        """Fields every rendered object of a kind gets (the emulator's setting)."""
        return self.shared.extra_fields

    @property
    def is_connected(self) -> bool:
        """Whether this is a connected account (reached through its platform's key)."""
        return False

    @property
    def event_account(self) -> str | None:
        """What this account's events carry as `account`: None unless a connected account."""
        return None

    # -- identity and versions -------------------------------------------------------------
    def next_seq(self) -> int:
        """The tie-break between objects created in the same second (Stripe documents none)."""
        if self.shared.same_second_order == "shuffled":
            return self._shuffle.randrange(1 << 62)
        return next(self._seq)

    def new_id(self, prefix: str, length: int, *, upper: bool = False) -> str:
        """A random id such as `promo_1Pgc79B7WZ01zgkW...`; deterministic after `reset`."""
        alphabet = (
            string.ascii_uppercase + string.digits
            if upper
            else string.ascii_letters + string.digits
        )
        return prefix + "".join(self._rng.choices(alphabet, k=length))

    @property
    def api_version(self) -> str:
        """The account's default API version now."""
        return self.api_version_at(self.clock.now())

    def api_version_at(self, moment: float) -> str:
        """The account's version at a moment: events keep the version of their creation."""
        version = self._versions[0][1]
        for since, candidate in self._versions:
            if since <= moment:
                version = candidate
        return version

    def set_api_version(self, version: str) -> None:
        """Upgrade (or pin) the account's API version from now on."""
        with self.lock:
            self._versions.append((self.clock.now(), check_api_version(version)))

    # -- the endpoint surface the HTTP layer calls --------------------------------------------
    def handle(
        self,
        collection: str,
        operation: str,
        object_id: str | None,
        params: Mapping[str, Any],
        ctx: RequestContext,
    ) -> dict[str, Any]:
        """Run one API operation, e.g. `("coupons", "update", "SUMMER", {...})`."""
        with self.lock:
            target = self.collections[collection]
            if operation == "list":
                return target.list(params, ctx)
            if operation == "create":
                return target.create(params, ctx)
            assert object_id is not None
            method = {"retrieve": target.retrieve, "update": target.update, "delete": target.delete}
            return method[operation](object_id, params, ctx)

    # -- controls for tests, the demo and benchmarks -----------------------------------------------
    def redeem(self, promotion_code_id: str) -> dict[str, Any]:
        """A customer redeems a promotion code (bumps `times_redeemed` on it and its coupon)."""
        with self.lock:
            return self.promotion_codes.redeem(promotion_code_id)

    def advance_clock(self, seconds: float) -> float:
        """Move emulated time forward (for every account: there is one clock)."""
        with self.lock:
            return self.clock.advance(seconds)

    def seed(self, preset: str | None = None, **counts: int) -> dict[str, int]:
        """Fill the account with a realistic, deterministic dataset (see `seed.py`)."""
        from .seed import seed_account

        with self.lock:
            return seed_account(self, preset=preset, **counts)

    def state(self, kind: str, api_version: str | None = None) -> dict[str, dict[str, Any]]:
        """Every live object of a kind (`coupon`, ...), by id, as Stripe would render it now."""
        with self.lock:
            target = self._by_kind(kind)
            version = api_version or self.api_version
            return {r.id: target.render(r, version) for r in target.live_records()}

    def deleted_ids(self, kind: str) -> set[str]:
        """Ids of deleted objects of a kind that have not come back."""
        with self.lock:
            target = self._by_kind(kind)
            return {i for i, r in target.records.items() if getattr(r, "deleted", False)} - set(
                r.id for r in target.live_records()
            )

    def counts(self) -> dict[str, int]:
        """Live objects by collection (`coupons`, `products`, `promotion_codes`, `events`)."""
        with self.lock:
            return {
                name: len(target.index)
                for name, target in self.collections.items()
                if name != "accounts"
            }

    def _by_kind(self, kind: str) -> Collection[Any]:
        for target in self.collections.values():
            if target.kind == kind:
                return target
        raise ValueError(f"unknown object kind: {kind}")


class ConnectedAccount(AccountState):
    """A connected account: an account of its own (objects, events, ids, API version),
    sharing the platform's clock, lock and emulator settings.

    `status`: `connected`, `disconnected` (the platform's access revoked, e.g. OAuth
    deauthorization) or `deleted`; only a connected one can be acted on.
    """

    @property
    def is_connected(self) -> bool:
        """Whether this is a connected account: it is."""
        return True

    @property
    def event_account(self) -> str | None:
        """Stripe: events of connected accounts "include an account attribute"."""
        return self.id

    @property
    def deleted(self) -> bool:
        """Whether the account was deleted (as `deleted_ids("account")` counts it)."""
        return self.status == "deleted"

    def describe(self) -> dict[str, Any]:
        """For the controls: id, status, profile basics and object counts."""
        return {
            "id": self.id,
            "status": self.status,
            "created": self.created,
            "type": self.profile.type,
            "email": self.profile.email,
            "objects": self.counts(),
        }


class Account(AccountState):
    """The account the API keys belong to, and the emulator's controls.

    A Connect platform once it has connected accounts (`add_connected_account`); a request
    with `Stripe-Account: acct_...` then acts on that account (`for_request`).
    """

    def __init__(
        self,
        *,
        api_version: str = DEFAULT_API_VERSION,
        livemode: bool = False,
        account_id: str = PLATFORM_ID,
    ) -> None:
        self.faults = Faults()
        self.rate_limits = RateLimits()
        self.keys = KeyRing()
        self.connect = ConnectHeaders()
        self.requests: Counter[str] = Counter()
        # Requests that named a connected account (Stripe-Account / Stripe-Context), by id.
        self.account_requests: Counter[str] = Counter()
        # Connected accounts that disconnect once they have served this many requests.
        self._disconnect_after: dict[str, int] = {}
        super().__init__(
            account_id=account_id,
            api_version=api_version,
            livemode=livemode,
            clock=Clock(),
            lock=threading.RLock(),
            shared=Shared(),
        )

    def _init_state(self) -> None:
        super()._init_state()
        self._connect_rng = random.Random(2)  # connected account ids, apart from object ids

    def set_same_second_order(self, order: str) -> None:
        """Order objects created from now on within one second by insertion, or stably shuffled."""
        if order not in get_args(SameSecondOrder):
            raise ValueError(f"same_second_order is insertion or shuffled, not {order!r}")
        with self.lock:
            self.shared.same_second_order = cast(SameSecondOrder, order)

    # -- controls for tests, the demo and benchmarks -----------------------------------------------
    def reset(self) -> None:
        """Forget all objects, events, connected accounts, key rules and clock offsets; faults
        off, limits and settings default."""
        with self.lock:
            self.clock.reset()
            self.faults.reset()
            self.rate_limits.reset()
            self.keys.reset()
            self.connect.reset()
            self.shared.reset()
            self.requests.clear()
            self.account_requests.clear()
            self._disconnect_after.clear()
            self._init_state()

    def set_event_delay(self, seconds: float) -> None:
        """New events become visible in lists only after this many emulated seconds (in every
        account)."""
        with self.lock:
            self.shared.event_delay = seconds

    def set_extra_fields(self, kind: str, fields: Mapping[str, Any]) -> None:
        """From now on render every `kind` object with these fields too, as when Stripe adds a
        field or changes a field's type (a name the object has is overridden); `{}` stops.

        Nothing else changes: no event is emitted, objects show the fields when next read (in
        every account).
        """
        with self.lock:
            self._by_kind(kind)
            if kind == "event":
                raise ValueError("extra fields are for coupons, products and promotion codes")
            if fields:
                self.shared.extra_fields[kind] = dict(fields)
            else:
                self.shared.extra_fields.pop(kind, None)

    # -- Connect -----------------------------------------------------------------------------------
    def add_connected_account(
        self,
        *,
        account_id: str | None = None,
        type: str = "standard",
        country: str = "US",
        email: str | None = None,
        default_currency: str = "usd",
        metadata: Mapping[str, str] | None = None,
        api_version: str | None = None,
    ) -> ConnectedAccount:
        """Connect a new account to this platform (connected now: its `created`)."""
        with self.lock:
            if type not in get_args(AccountType):
                raise ValueError(f"type is standard, express or custom, not {type!r}")
            if not isinstance(country, str) or not country.isalpha() or len(country) != 2:
                raise ValueError(f"country is a two-letter code, not {country!r}")
            if email is not None and not isinstance(email, str):
                raise ValueError(f"email is a string, not {email!r}")
            currency = p.currency(default_currency, "default_currency")
            taken = set(self.accounts.records) | {self.id}
            if account_id is None:
                account_id = "acct_1" + "".join(
                    self._connect_rng.choices(string.ascii_letters + string.digits, k=15)
                )
            connected = ConnectedAccount(
                account_id=check_new_id(account_id, taken),
                api_version=api_version or self.api_version,
                livemode=self.livemode,
                clock=self.clock,
                lock=self.lock,
                shared=self.shared,
                profile=AccountProfile(
                    type=cast(AccountType, type),
                    country=country.upper(),
                    email=email,
                    default_currency=currency or "usd",
                    metadata=p.metadata(metadata, "metadata") or {},
                ),
                id_seed=f"ids:{account_id}",
            )
            connected.seq = self.next_seq()
            self.accounts.insert(connected)
            return connected

    def connected_account(self, account_id: str) -> ConnectedAccount:
        """A connected account by id, whatever its status (404 `resource_missing` if none)."""
        with self.lock:
            found = self.accounts.records.get(account_id)
            if found is None:
                raise missing("connected account", account_id)
            return cast(ConnectedAccount, found)

    def connected_accounts(self, status: str | None = None) -> list[ConnectedAccount]:
        """Every account ever connected, newest first; only those with `status` if given."""
        with self.lock:
            return [a for a in self.accounts.connected() if status in (None, a.status)]

    def disconnect_connected_account(self, account_id: str) -> ConnectedAccount:
        """The account revokes the platform's access (OAuth deauthorization): it leaves
        `GET /v1/accounts`, and requests for it get Stripe's 403 `account_invalid`."""
        return self._end_connection(account_id, "disconnected")

    def delete_connected_account(self, account_id: str) -> ConnectedAccount:
        """The account is deleted: as disconnected, for good."""
        return self._end_connection(account_id, "deleted")

    def disconnect_connected_account_after(self, account_id: str, requests: int) -> None:
        """For tests of a run that loses an account midway: the account disconnects once it
        has served `requests` more requests (the next one gets Stripe's 403)."""
        with self.lock:
            self.connected_account(account_id)
            self._disconnect_after[account_id] = self.account_requests[account_id] + requests

    def _end_connection(self, account_id: str, status: Status) -> ConnectedAccount:
        with self.lock:
            connected = self.connected_account(account_id)
            if connected.status == "deleted" or connected.status == status:
                raise ValueError(f"account {account_id} is already {connected.status}")
            if connected.id in self.accounts.index:
                self.accounts.index.remove(connected.id)
            connected.status = status
            return connected

    def for_request(
        self, stripe_account: str | None, stripe_context: str | None, api_key: str | None
    ) -> AccountState:
        """The account a request with these headers acts on, or Stripe's error: 403
        `account_invalid` for an account the key cannot reach."""
        if stripe_account is None and stripe_context is None:  # the usual case, unlocked
            return self
        with self.lock:
            named = stripe_context if stripe_context is not None else stripe_account
            if named is not None:
                self.account_requests[named] += 1
                limit = self._disconnect_after.get(named)
                if limit is not None and self.account_requests[named] > limit:
                    del self._disconnect_after[named]
                    self.disconnect_connected_account(named)
            return resolve(self, self.connect, stripe_account, stripe_context, api_key)

    def budget_for(self, stripe_account: str | None, stripe_context: str | None) -> str | None:
        """The connected account whose rate-limit budget a request may draw on (see
        `RateLimits.set_connect_budget`); None: the platform's own."""
        if stripe_account is None and stripe_context is None:
            return None
        with self.lock:
            return budget_of(self, self.connect, stripe_account, stripe_context)
