"""The accounts a run reads (Stripe Connect): the key's own, a list of connected accounts, or
all of them; one client per account, one slice of the source state per account, and a
failure of one account that leaves the others to finish.

`sources.stripe.accounts`: absent, the key's own account; a list of `acct_...` ids; or
`"all"`, the key's own account and every account `GET /v1/accounts` lists at the start.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence
from typing import Any, Literal, TypeVar

from .client import StripeApi
from .credentials import check_account
from .errors import StripeAuthError, StripeSourceError, StripeUnreachableError
from .interleave import interleaved
from .listing import Lister
from .plan import Plan, Planner, SyncRequest
from .rate_limit import RateBudget
from .settings import ACCOUNTS_AT_ONCE, ACCOUNTS_PATH, ObjectType
from .stats import RunStats

T = TypeVar("T")
ALL: Literal["all"] = "all"
Selection = tuple[str, ...] | Literal["all"] | None
# Whose rate budget a platform's requests for connected accounts draw on. Stripe documents
# limits per account but not which account's; `platform` (one budget) is the safe reading.
BUDGETS = ("platform", "per_account")
# Errors about the key or the base URL: every account would fail the same way.
WHOLE_RUN_ERRORS = (StripeAuthError, StripeUnreachableError)
# One client per account: `account` None is the key's own (no Stripe-Account header).
ClientFactory = Callable[[str | None, RateBudget | None], StripeApi]


def parse_accounts(value: Any) -> Selection:
    """`sources.stripe.accounts` as given (None, "all", a list, a comma-separated or JSON list
    string) as None, "all" or a tuple of checked `acct_...` ids."""
    if value is None or value == "" or value == [] or value == ():
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == ALL:
            return ALL
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise StripeSourceError(
                    f"sources.stripe.accounts {text!r} is not a JSON list: use "
                    '["acct_1", "acct_2"], acct_1,acct_2 or "all".'
                ) from None
        else:
            value = [part for part in (p.strip() for p in text.split(",")) if part]
    if not isinstance(value, list | tuple):
        raise StripeSourceError(
            f'sources.stripe.accounts must be a list of acct_... ids or "all", not {value!r}.'
        )
    if any(str(v).strip().lower() == ALL for v in value):
        return ALL
    return tuple(dict.fromkeys(check_account(str(v).strip()) for v in value)) or None


class AccountRun:
    """One account's part of a run: its client and listings, its plan, its state."""

    def __init__(
        self,
        account_id: str,
        api: StripeApi,
        planner: Planner,
        root: MutableMapping[str, Any],
    ) -> None:
        self.account_id = account_id
        self.api = api
        self.lister = planner.lister
        self.planner = planner
        self.root = root  # the source state: what all accounts share (Stripe's clock offset)
        self.state = root["accounts"].setdefault(account_id, {})
        self.failed: str | None = None

    def __repr__(self) -> str:
        return f"AccountRun({self.account_id!r})"

    @property
    def events_state(self) -> dict[str, Any]:
        """The account's events cursor: where its next run reads events from."""
        events: dict[str, Any] = self.state.setdefault("events", {})
        return events

    def plan(self) -> Plan:
        """The account's plan for this run, made by whichever resource asks first."""
        return self.planner.plan(self.events_state)

    def created_cursor(self, object_type: str) -> dict[str, Any]:
        """The newest `created` this account's listing of `object_type` has loaded, and the ids
        created in that second (the next listing starts at that second and drops them)."""
        cursors: dict[str, Any] = self.state.setdefault("created", {})
        cursor: dict[str, Any] = cursors.get(object_type) or {}
        return cursor

    def advance_created(self, object_type: str, cursor: int, ids: Iterable[str]) -> None:
        """After a complete listing: the next one starts at `cursor`, without `ids`."""
        self.state.setdefault("created", {})[object_type] = {
            "cursor": cursor,
            "boundary": sorted(ids),
        }


class Accounts:
    """The run's accounts, resolved once (on first use, inside a resource, where the source
    state is): their clients share one rate budget unless `budget` is `per_account`."""

    def __init__(
        self,
        make_client: ClientFactory,
        selection: Selection,
        budget: str,
        request: SyncRequest,
        lag: int,
        types: Sequence[ObjectType],
        stats: RunStats,
    ) -> None:
        if budget not in BUDGETS:
            raise StripeSourceError(
                f"sources.stripe.connect_rate_budget must be one of {', '.join(BUDGETS)}, "
                f"not {budget!r}."
            )
        self.make_client, self.selection, self.budget = make_client, selection, budget
        self.request, self.lag, self.types, self.stats = request, lag, types, stats
        self._own: StripeApi | None = None
        self._runs: list[AccountRun] | None = None
        self._failed: StripeSourceError | None = None
        self._lock = threading.Lock()

    def own_client(self) -> StripeApi:
        """The key's own client (made on first use: building the source needs no key)."""
        with self._lock:
            return self._own_client()

    def _own_client(self) -> StripeApi:
        if self._own is None:
            self._own = self.make_client(None, None)
            self.stats.apis.append(self._own)
        return self._own

    def runs(self, state: MutableMapping[str, Any]) -> list[AccountRun]:
        """Every account of this run (the same list for every resource)."""
        with self._lock:
            if self._failed is not None:
                raise self._failed
            if self._runs is None:
                try:
                    self._runs = self._resolve(state)
                except StripeSourceError as error:
                    self._failed = error
                    raise
            return self._runs

    def single(self, state: MutableMapping[str, Any]) -> AccountRun:
        """The one account a verb acts on (sync by ids, a batch, a soft delete)."""
        if self.selection == ALL or (self.selection is not None and len(self.selection) > 1):
            raise StripeSourceError(
                f"A {self.request.mode} run acts on one account: pass one --account "
                "(account=...), not several or --all-accounts."
            )
        return self.runs(state)[0]

    def verb_account(self, state: MutableMapping[str, Any]) -> str:
        """The account id a batch or a soft delete records, asking Stripe only when it is
        the key's own and no earlier run noted its id."""
        if isinstance(self.selection, tuple) and len(self.selection) == 1:
            return self.selection[0]
        if self.selection is None and state.get("own_account"):
            return str(state["own_account"])
        return self.single(state).account_id

    def each(
        self, state: MutableMapping[str, Any], work: Callable[[AccountRun], Iterable[T]]
    ) -> Iterator[T]:
        """`work` for every account, several at once, items as they come. An account that
        fails (disconnected, deleted, permission revoked) stops alone: the run goes on."""
        runs = self.runs(state)
        isolate = len(runs) > 1
        return interleaved(
            (self._isolated(run, work, isolate) for run in runs),
            at_most=ACCOUNTS_AT_ONCE,
        )

    def _isolated(
        self, run: AccountRun, work: Callable[[AccountRun], Iterable[T]], isolate: bool
    ) -> Iterator[T]:
        if run.failed is not None:
            return
        try:
            yield from work(run)
        except StripeSourceError as error:
            if not isolate or isinstance(error, WHOLE_RUN_ERRORS):
                raise
            with self._lock:
                if run.failed is None:
                    run.failed = str(error)
                    self.stats.failed_accounts[run.account_id] = str(error)

    def _resolve(self, state: MutableMapping[str, Any]) -> list[AccountRun]:
        own = self._own_client()
        own_id = state.get("own_account")
        if own_id is None:
            own_id = str(own.own_account()["id"])
            state["own_account"] = own_id
        if self.selection is None:
            wanted: list[str] = [own_id]
        elif self.selection == ALL:
            wanted = [own_id, *self._connected(own)]
        else:
            wanted = list(self.selection)
        slices = state.setdefault("accounts", {})
        adopt_legacy_state(state, slices.setdefault(own_id, {}))
        shared = own.budget if self.budget == "platform" else None
        runs = []
        for account_id in dict.fromkeys(wanted):
            is_own = account_id == own_id
            api = own if is_own else self.make_client(account_id, shared)
            if not is_own:
                self.stats.apis.append(api)
            planner = Planner(api, self.request, self.lag, self.types, self.stats, account_id)
            runs.append(AccountRun(account_id, api, planner, state))
        self.stats.accounts = [run.account_id for run in runs]
        return runs

    def _connected(self, own: StripeApi) -> list[str]:
        """Every connected account `GET /v1/accounts` lists now (disconnected ones are not)."""
        pages = Lister(own).list_pages(ACCOUNTS_PATH, parallel=False)
        return [str(obj["id"]) for page in pages for obj in page.objects]


def adopt_legacy_state(state: MutableMapping[str, Any], own: MutableMapping[str, Any]) -> None:
    """State written before accounts (0.2): the events cursor and dlt's `created` cursors
    become the own account's, so an upgrade neither re-reads nor misses anything."""
    legacy_events = state.pop("events", None)
    if legacy_events and "events" not in own:
        own["events"] = {k: v for k, v in legacy_events.items() if k != "clock_offset"}
        state.setdefault("clock_offset", legacy_events.get("clock_offset", 0))
    resources = state.get("resources") or {}
    cursors = own.setdefault("created", {})
    for name, resource in resources.items():
        last = ((resource or {}).get("incremental") or {}).get("created", {}).get("last_value")
        object_type = LEGACY_CURSORS.get(name)
        if object_type and last is not None and object_type not in cursors:
            cursors[object_type] = {"cursor": int(last), "boundary": []}


# 0.2's resources kept their `created` cursor in dlt's incremental state, by table name.
LEGACY_CURSORS = {"coupons": "coupon", "products": "product", "promotion_codes": "promotion_code"}
