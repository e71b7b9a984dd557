"""Events: one per change, rendered in the account's version of the moment, kept 30 days."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from . import params as p
from .collection import Collection, RequestContext
from .errors import invalid, missing

RETENTION_SECONDS = 30 * 24 * 3600


@dataclass(slots=True)
class EventRecord:
    """An event with its snapshot of the object after the change."""

    id: str
    created: int
    seq: int
    type: str
    api_version: str
    data: dict[str, Any]
    request_id: str | None
    idempotency_key: str | None
    visible_at: float
    livemode: bool
    account: str | None = None  # the connected account it happened in (None: the platform)


def wildcard(pattern: str) -> re.Pattern[str]:
    """`type=coupon.*`: `*` matches any run of characters, everything else is literal."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def previous_attributes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Old values of the top-level fields that changed (Stripe's `previous_attributes`)."""
    return {key: before.get(key) for key in after if before.get(key) != after[key]}


class Events(Collection[EventRecord]):
    """`/v1/events`: listing is eventually consistent (`visibility_delay`)."""

    kind = "event"
    path = "/v1/events"
    list_filters: ClassVar[Mapping[str, p.Parser]] = {
        "type": p.text(),
        "types": p.string_list(20),
        "delivery_success": p.boolean,
    }

    @property
    def visibility_delay(self) -> float:
        """Emulated seconds before a new event is listed or retrievable (the emulator's
        setting: `Account.set_event_delay`)."""
        delay: float = self.account.shared.event_delay
        return delay

    @visibility_delay.setter
    def visibility_delay(self, seconds: float) -> None:
        self.account.shared.event_delay = seconds

    def emit(
        self,
        event_type: str,
        obj: dict[str, Any],
        ctx: RequestContext | None,
        *,
        before: dict[str, Any] | None = None,
        at: int | None = None,
    ) -> EventRecord | None:
        """Record an event now (or at `at`, for seeded history); too old ones are dropped."""
        now = self.account.clock.now()
        created = int(now) if at is None else at
        if created <= now - RETENTION_SECONDS:
            return None
        data: dict[str, Any] = {"object": obj}
        if before is not None:
            data["previous_attributes"] = previous_attributes(before, obj)
        record = EventRecord(
            id=self.account.new_id("evt_", 24),
            created=created,
            seq=self.account.next_seq(),
            type=event_type,
            # The version at the moment of the change (`created` is truncated to the second).
            api_version=self.account.api_version_at(now if at is None else created),
            data=data,
            request_id=ctx.request_id if ctx else None,
            idempotency_key=ctx.idempotency_key if ctx else None,
            visible_at=now + self.visibility_delay if at is None else created,
            livemode=self.account.livemode,
            account=self.account.event_account,
        )
        self.insert(record)
        return record

    def render(
        self, record: EventRecord, api_version: str, expand: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        # Events keep the version they were created in, whatever the request asks for.
        body: dict[str, Any] = {
            "id": record.id,
            "object": "event",
            "api_version": record.api_version,
            "created": record.created,
            "data": record.data,
            "livemode": record.livemode,
            "pending_webhooks": 0,
            "request": {"id": record.request_id, "idempotency_key": record.idempotency_key},
            "type": record.type,
        }
        if record.account is not None:  # "These events include an account attribute"
            body = {"account": record.account, **body}
        return body

    def purge_expired(self) -> None:
        """Forget events past retention, oldest first."""
        horizon = self.account.clock.now() - RETENTION_SECONDS
        expired = []
        for object_id in self.index.oldest_first():
            if self.records[object_id].created > horizon:
                break
            expired.append(object_id)
        for object_id in expired:
            self.index.remove(object_id)
            del self.records[object_id]

    def visible(self, record: EventRecord) -> bool:
        """Listed and retrievable: past its visibility delay and within retention."""
        now = self.account.clock.now()
        return record.visible_at <= now and record.created > now - RETENTION_SECONDS

    def live(self, object_id: str, param: str | None = "id") -> EventRecord:
        record = super().live(object_id, param)
        if not self.visible(record):
            raise missing(self.kind, object_id, param)
        return record

    def list(self, params: Mapping[str, Any], ctx: RequestContext) -> dict[str, Any]:
        self.purge_expired()
        return super().list(params, ctx)

    def check_list_filters(self, filters: dict[str, Any], *, cursors: bool) -> None:
        if filters.get("type") and filters.get("types"):
            raise invalid("You may only specify one of these parameters: type, types.", "types")

    def list_predicate(self, filters: dict[str, Any]) -> Callable[[str], bool] | None:
        # `type` may be a `*` group (only `*` is documented as a wildcard); `types[]` holds
        # exact names, so `coupon.*` there matches no event rather than being an error.
        pattern = wildcard(filters["type"]) if filters.get("type") else None
        names = frozenset(filters.get("types") or ())

        def accept(object_id: str) -> bool:
            record = self.records[object_id]
            if not self.visible(record):
                return False
            if pattern is not None:
                return pattern.fullmatch(record.type) is not None
            return not names or record.type in names

        return accept
