"""Stripe Connect: `/v1/account(s)`, and which account a request acts on (`Stripe-Account`).

Plain state and rules, no HTTP: a platform (`Account`) holds its connected accounts (each an
account of its own, `ConnectedAccount` in account.py) in an `Accounts` collection; the HTTP
layer passes the request's `Stripe-Account` / `Stripe-Context` headers to `Account.for_request`,
which answers the account to act on or Stripe's error. What each rule rests on is quoted in
the fidelity table of README.md.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast, get_args

from . import params as p
from .auth import redact
from .collection import Collection, RequestContext
from .errors import StripeError

if TYPE_CHECKING:
    from .account import AccountState

ACCOUNT_ID = re.compile(r"^acct_[0-9A-Za-z]{1,250}$")
AccountType = Literal["standard", "express", "custom"]
Status = Literal["connected", "disconnected", "deleted"]
OwnAccountHeader = Literal["refuse", "accept"]
BothHeaders = Literal["refuse", "context"]
HEADER_DEFAULTS: dict[str, str] = {"own_account_header": "refuse", "both_headers": "refuse"}


@dataclass(slots=True)
class AccountProfile:
    """What an account object says about an account (Stripe's `account` resource, in part)."""

    type: AccountType = "standard"
    country: str = "US"
    email: str | None = None
    default_currency: str = "usd"
    charges_enabled: bool = True
    payouts_enabled: bool = True
    details_submitted: bool = True
    business_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


class Owned(Protocol):
    """An account as the `/v1/accounts` collection sees it (its owner, or a connected one)."""

    id: str
    created: int
    seq: int
    profile: AccountProfile
    status: Status
    is_connected: bool


def no_access(key: str | None, account_id: str) -> StripeError:
    """Stripe's 403 for an account the key cannot act on: unknown, disconnected or deleted."""
    return StripeError(
        403,
        f"The provided key '{redact(key or '')}' does not have access to account "
        f"'{account_id}' (or that account does not exist). Application access may have been "
        "revoked.",
        code="account_invalid",
    )


def render_account(account: Owned) -> dict[str, Any]:
    """The account object, fields as in Stripe's example account (fixtures3.json).

    A connected account is only ever seen through its platform's key, whose application
    controls an Express or Custom account (the spec's `controller.type`: `application` "if a
    Connect application controls the account, or `account`, if the account controls itself").
    """
    profile = account.profile
    enabled = "active" if profile.charges_enabled else "inactive"
    controller: dict[str, Any] = {"type": "account"}
    if account.is_connected and profile.type != "standard":
        controller = {"is_controller": True, "type": "application"}
    return {
        "id": account.id,
        "object": "account",
        "business_type": profile.business_type,
        "capabilities": {"card_payments": enabled, "transfers": enabled},
        "charges_enabled": profile.charges_enabled,
        "controller": controller,
        "country": profile.country,
        "created": account.created,
        "default_currency": profile.default_currency,
        "details_submitted": profile.details_submitted,
        "email": profile.email,
        "metadata": dict(profile.metadata),
        "payouts_enabled": profile.payouts_enabled,
        "type": profile.type,
    }


class Accounts(Collection[Any]):
    """`/v1/accounts`: the owner's connected accounts, and `/v1/account(s/{id})` for itself.

    Only accounts still connected are live (listed, retrievable); a disconnected or deleted
    one stays in `records` (for the truth) but answers as Stripe's `no_access`.
    """

    kind = "account"
    path = "/v1/accounts"

    def render(
        self, record: Any, api_version: str, expand: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        return self.with_extra_fields(render_account(cast(Owned, record)))

    def retrieve(
        self, object_id: str, params: Mapping[str, Any], ctx: RequestContext
    ) -> dict[str, Any]:
        """`GET /v1/account` (the account acted on) and `GET /v1/accounts/{id}`: the same thing
        for one's own id ("The Stripe-Account header approach is implied in any API request
        that includes the Stripe account ID in the URL"); another id must be connected to the
        account acted on, else Stripe's 403."""
        parsed = p.parse(params, {"expand": p.expand_list})
        self._expansions(parsed.get("expand", []))
        owner = cast(Owned, self.account)
        if object_id == owner.id:
            return self.with_extra_fields(render_account(owner))
        if object_id not in self.index:
            raise no_access(ctx.api_key, object_id)
        return self.render(self.records[object_id], ctx.api_version)

    def connected(self) -> builtins.list[Any]:
        """Every account ever connected, newest first, whatever its status now."""
        return sorted(self.records.values(), key=lambda a: (a.created, a.seq), reverse=True)


@dataclass
class ConnectHeaders:
    """How the platform reads `Stripe-Account` and `Stripe-Context` where Stripe is silent."""

    own_account_header: OwnAccountHeader = "refuse"
    both_headers: BothHeaders = "refuse"

    def configure(self, **settings: str) -> None:
        """Change some settings; an unknown name or value is an error."""
        choices = {
            "own_account_header": get_args(OwnAccountHeader),
            "both_headers": get_args(BothHeaders),
        }
        for name, value in settings.items():
            if name not in choices:
                raise ValueError(f"unknown connect setting: {name}")
            if value not in choices[name]:
                raise ValueError(f"{name} is {' or '.join(choices[name])}, not {value!r}")
        for name, value in settings.items():
            setattr(self, name, value)

    def settings(self) -> dict[str, str]:
        """The current settings, by the names `configure` takes."""
        return {"own_account_header": self.own_account_header, "both_headers": self.both_headers}

    def reset(self) -> None:
        """Back to the strict defaults."""
        self.configure(**HEADER_DEFAULTS)

    def requested(self, stripe_account: str | None, stripe_context: str | None) -> str | None:
        """The account a request names: `None` for the key's own (no header), else the value.

        `Stripe-Context` is a path of account ids separated by `/` (docs.stripe.com/context);
        the one form a platform's key uses for its connected account is the bare id, and the
        value is passed on whole, so a longer path names no account this key can reach.
        """
        if stripe_account is not None and stripe_context is not None:
            if self.both_headers == "refuse":
                raise StripeError(
                    400,
                    "You may only specify one of these headers: Stripe-Account, Stripe-Context.",
                )
            return stripe_context
        return stripe_context if stripe_context is not None else stripe_account


def resolve(
    owner: AccountState,
    headers: ConnectHeaders,
    stripe_account: str | None,
    stripe_context: str | None,
    api_key: str | None,
) -> AccountState:
    """The account a request acts on, or Stripe's error (see `ConnectHeaders.requested`)."""
    wanted = headers.requested(stripe_account, stripe_context)
    if wanted is None:
        return owner
    if wanted == owner.id and headers.own_account_header == "accept":
        return owner
    accounts = owner.accounts
    if ACCOUNT_ID.match(wanted) and wanted in accounts.index:
        found: AccountState = accounts.records[wanted]
        return found
    raise no_access(api_key, wanted)


def budget_of(
    owner: AccountState,
    headers: ConnectHeaders,
    stripe_account: str | None,
    stripe_context: str | None,
) -> str | None:
    """The connected account whose rate-limit budget a request would draw on (None: the
    platform's), decided before anything is checked: a request naming no account the platform
    ever connected counts as the platform's."""
    try:
        wanted = headers.requested(stripe_account, stripe_context)
    except StripeError:
        return None
    return wanted if wanted is not None and wanted in owner.accounts.records else None


def check_new_id(account_id: str, taken: builtins.set[str]) -> str:
    """An id a test picks for a new connected account: `acct_` and letters or digits, unused."""
    if not ACCOUNT_ID.match(account_id):
        raise ValueError(
            f"a connected account id is acct_ followed by letters or digits, not {account_id!r}"
        )
    if account_id in taken:
        raise ValueError(f"account {account_id} already exists")
    return account_id


STATUSES: tuple[Status, ...] = get_args(Status)
TYPES: tuple[AccountType, ...] = get_args(AccountType)
