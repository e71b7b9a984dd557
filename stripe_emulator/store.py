"""Objects of one kind kept in Stripe's list order, paged without scanning everything."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

from sortedcontainers import SortedList

from .errors import StripeError, invalid, missing

Key = tuple[int, int]  # (created, insertion sequence): newest first means descending keys


class OrderedIndex:
    """Ids ordered by (created, insertion sequence): lists are newest first and stable."""

    def __init__(self) -> None:
        self._keys: Any = SortedList()
        self._key_of: dict[str, Key] = {}
        self._id_of: dict[Key, str] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._key_of

    def add(self, object_id: str, created: int, seq: int) -> None:
        """Index an object; its key never changes, since `created` is immutable."""
        key = (created, seq)
        self._keys.add(key)
        self._key_of[object_id] = key
        self._id_of[key] = object_id

    def remove(self, object_id: str) -> None:
        """Drop a deleted object from every list."""
        key = self._key_of.pop(object_id)
        self._keys.remove(key)
        del self._id_of[key]

    def oldest_first(self) -> Iterator[str]:
        """Ids from the oldest; used to expire events."""
        for key in self._keys:
            yield self._id_of[key]

    def page(
        self,
        *,
        kind: str,
        created: dict[str, int],
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        accept: Callable[[str], bool] | None = None,
    ) -> tuple[list[str], bool]:
        """One page of ids, newest first, plus whether more follow in that direction."""
        if starting_after and ending_before:
            raise invalid(
                "You may only specify one of these parameters: ending_before, starting_after.",
                "ending_before",
            )
        low: tuple[float, float] = (float("-inf"), float("-inf"))
        high: tuple[float, float] = (float("inf"), float("inf"))
        if "gte" in created:
            low = max(low, (created["gte"], float("-inf")))
        if "gt" in created:
            low = max(low, (created["gt"] + 1, float("-inf")))
        if "lte" in created:
            high = min(high, (created["lte"], float("inf")))
        if "lt" in created:
            high = min(high, (created["lt"] - 1, float("inf")))
        if ending_before:
            cursor = self._cursor(kind, ending_before, "ending_before")
            walk = self._walk(max(low, cursor), high, ascending=True, accept=accept, skip=cursor)
        else:
            if starting_after:
                cursor = self._cursor(kind, starting_after, "starting_after")
                high = min(high, cursor)
            skip = self._key_of[starting_after] if starting_after else None
            walk = self._walk(low, high, ascending=False, accept=accept, skip=skip)
        ids = list(islice(walk, limit + 1))
        has_more = len(ids) > limit
        page = ids[:limit]
        return (list(reversed(page)) if ending_before else page), has_more

    def _cursor(self, kind: str, object_id: str, param: str) -> Key:
        key = self._key_of.get(object_id)
        if key is None:
            raise missing(kind, object_id, param)
        return key

    def _walk(
        self,
        low: tuple[float, float],
        high: tuple[float, float],
        *,
        ascending: bool,
        accept: Callable[[str], bool] | None,
        skip: Key | None,
    ) -> Iterator[str]:
        """Matching ids between the bounds, lazily: the caller stops after one page."""
        if low > high:
            return
        for key in self._keys.irange(low, high, reverse=not ascending):
            if key == skip:
                continue
            object_id = self._id_of[key]
            if accept is None or accept(object_id):
                yield object_id


def check_limit(value: int | None) -> int:
    """Stripe's `limit`: 1..100, default 10."""
    if value is None:
        return 10
    if not 1 <= value <= 100:
        raise StripeError(
            400, "Invalid limit: must be between 1 and 100", code="parameter_invalid", param="limit"
        )
    return value
