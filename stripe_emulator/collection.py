"""What every Stripe object kind shares: storage in list order, list/retrieve, rendering."""

from __future__ import annotations

import builtins
import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from . import params as p
from .errors import StripeError, missing
from .store import OrderedIndex, check_limit

if TYPE_CHECKING:
    from .account import AccountState


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who asks and how: the API version to render in, the request's identifiers and key."""

    api_version: str
    request_id: str | None = None
    idempotency_key: str | None = None
    api_key: str | None = None  # for messages that name it (redacted), e.g. account_invalid


class Record(Protocol):
    """A stored object: an id and its immutable place in list order."""

    id: str
    created: int
    seq: int


R = TypeVar("R", bound=Record)


class Collection(Generic[R]):
    """One object kind: records by id, an ordered index for lists, and rendering."""

    kind: ClassVar[str]
    path: ClassVar[str]
    list_filters: ClassVar[Mapping[str, p.Parser]] = {}
    expandable: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, account: AccountState) -> None:
        self.account = account
        self.records: dict[str, R] = {}
        self.index = OrderedIndex()

    # -- rendering -------------------------------------------------------------------------
    def render(
        self, record: R, api_version: str, expand: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """The JSON object Stripe returns for `record` in `api_version`."""
        raise NotImplementedError

    def with_extra_fields(self, body: dict[str, Any]) -> dict[str, Any]:
        """`body` plus the fields a test has Stripe add to this kind (`set_extra_fields`)."""
        extra = self.account.extra_fields.get(self.kind)
        if extra:
            body.update(copy.deepcopy(extra))
        return body

    def render_current(self, record: R) -> dict[str, Any]:
        """Rendered in the account's version now: what an event records."""
        return self.render(record, self.account.api_version_at(self.account.clock.now()))

    # -- storage ----------------------------------------------------------------------------
    def insert(self, record: R) -> R:
        """Store a new live object."""
        self.records[record.id] = record
        self.index.add(record.id, record.created, record.seq)
        return record

    def live(self, object_id: str, param: str | None = "id") -> R:
        """The live object with this id, or Stripe's 404."""
        if object_id not in self.index:
            raise missing(self.kind, object_id, param)
        return self.records[object_id]

    def live_records(self) -> builtins.list[R]:
        """Every live object, newest first."""
        ids, _ = self.index.page(
            kind=self.kind,
            created={},
            limit=len(self.index) or 1,
            starting_after=None,
            ending_before=None,
        )
        return [self.records[i] for i in ids]

    # -- endpoints --------------------------------------------------------------------------
    def list(self, params: Mapping[str, Any], ctx: RequestContext) -> dict[str, Any]:
        """`GET /v1/<kind>s`: one page, newest first."""
        parsed = p.parse(params, {**p.LIST_SPEC, **self.list_filters})
        limit = check_limit(parsed.pop("limit", None))
        created = parsed.pop("created", None) or {}
        starting_after = parsed.pop("starting_after", None)
        ending_before = parsed.pop("ending_before", None)
        expand = self._expansions(parsed.pop("expand", []), prefix="data.")
        self.check_list_filters(parsed, cursors=bool(starting_after or ending_before))
        accept = self.list_predicate({k: v for k, v in parsed.items() if v is not None})
        ids, has_more = self.index.page(
            kind=self.kind,
            created=created,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            accept=accept,
        )
        return {
            "object": "list",
            "data": [self.render(self.records[i], ctx.api_version, expand) for i in ids],
            "has_more": has_more,
            "url": self.path,
        }

    def retrieve(
        self, object_id: str, params: Mapping[str, Any], ctx: RequestContext
    ) -> dict[str, Any]:
        """`GET /v1/<kind>s/<id>`."""
        parsed = p.parse(params, {"expand": p.expand_list})
        record = self.live(object_id)
        return self.render(record, ctx.api_version, self._expansions(parsed.get("expand", [])))

    def create(self, params: Mapping[str, Any], ctx: RequestContext) -> dict[str, Any]:
        """`POST /v1/<kind>s`."""
        raise self.unsupported("POST")

    def update(
        self, object_id: str, params: Mapping[str, Any], ctx: RequestContext
    ) -> dict[str, Any]:
        """`POST /v1/<kind>s/<id>`."""
        raise self.unsupported("POST", object_id)

    def delete(
        self, object_id: str, params: Mapping[str, Any], ctx: RequestContext
    ) -> dict[str, Any]:
        """`DELETE /v1/<kind>s/<id>`."""
        raise self.unsupported("DELETE", object_id)

    # -- hooks for kinds ----------------------------------------------------------------------
    def check_list_filters(self, filters: dict[str, Any], *, cursors: bool) -> None:
        """Reject filter combinations Stripe rejects."""

    def list_predicate(self, filters: dict[str, Any]) -> Callable[[str], bool] | None:
        """A test for list filters beyond `created`, or None when there are none."""
        return None

    # -- helpers ------------------------------------------------------------------------------
    def unsupported(self, method: str, object_id: str | None = None) -> StripeError:
        """Stripe's 404 for a route it does not have."""
        url = self.path + (f"/{object_id}" if object_id else "")
        return StripeError(
            404,
            f"Unrecognized request URL ({method}: {url}). Please see https://stripe.com/docs "
            "or we can help at https://support.stripe.com/.",
        )

    def _expansions(self, requested: builtins.list[str], prefix: str = "") -> frozenset[str]:
        found = set()
        for path in requested:
            # In a list every expansion is under `data.`: `expand[]=applies_to` is refused.
            field = path[len(prefix) :] if path.startswith(prefix) else ""
            if field not in self.expandable:
                raise StripeError(
                    400, f"This property cannot be expanded ({path}).", param="expand"
                )
            found.add(field)
        return frozenset(found)

    def record_event(
        self,
        event_type: str,
        record: R,
        ctx: RequestContext | None,
        before: dict[str, Any] | None = None,
    ) -> None:
        """Record the event for a change to `record` (after the change)."""
        self.account.events.emit(
            f"{self.kind}.{event_type}", self.render_current(record), ctx, before=before
        )
