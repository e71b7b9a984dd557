"""Objects of one kind kept in Stripe's list order, paged without scanning everything."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

from sortedcontainers import SortedList

from .errors import StripeError, invalid, missing

# (created, insertion sequence, id): newest first means descending keys. The id rides in the
# key so a page is read straight off the sorted list; bounds are (created, +-inf) pairs, which
# compare before the id is ever reached.
Key = tuple[int, int, str]
Bound = tuple[Any, ...]  # a (created, +-inf) pair, or a cursor's key


class OrderedIndex:
    """Ids ordered by (created, insertion sequence): lists are newest first and stable."""

    def __init__(self) -> None:
        self._keys: Any = SortedList()
        self._key_of: dict[str, Key] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._key_of

    def add(self, object_id: str, created: int, seq: int) -> None:
        """Index an object; its key never changes, since `created` is immutable."""
        key = (created, seq, object_id)
        self._keys.add(key)
        self._key_of[object_id] = key

    def remove(self, object_id: str) -> None:
        """Drop a deleted object from every list."""
        self._keys.remove(self._key_of.pop(object_id))

    def oldest_first(self) -> Iterator[str]:
        """Ids from the oldest; used to expire events."""
        for key in self._keys:
            yield key[2]

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
        low: Bound = (float("-inf"), float("-inf"))
        high: Bound = (float("inf"), float("inf"))
        if "gte" in created:
            low = max(low, (created["gte"], float("-inf")))
        if "gt" in created:
            low = max(low, (created["gt"] + 1, float("-inf")))
        if "lte" in created:
            high = min(high, (created["lte"], float("inf")))
        if "lt" in created:
            high = min(high, (created["lt"] - 1, float("inf")))
        skip: Key | None = None
        if ending_before:
            skip = self._cursor(kind, ending_before, "ending_before")
            low = max(low, skip)
        elif starting_after:
            skip = self._cursor(kind, starting_after, "starting_after")
            high = min(high, skip)
        ascending = bool(ending_before)
        if accept is None:
            ids = self._take(low, high, ascending=ascending, skip=skip, count=limit + 1)
        else:
            walk = self._walk(low, high, ascending=ascending, accept=accept, skip=skip)
            ids = list(islice(walk, limit + 1))
        has_more = len(ids) > limit
        page = ids[:limit]
        return (list(reversed(page)) if ending_before else page), has_more

    def _cursor(self, kind: str, object_id: str, param: str) -> Key:
        key = self._key_of.get(object_id)
        if key is None:
            raise missing(kind, object_id, param)
        return key

    def _take(
        self,
        low: Bound,
        high: Bound,
        *,
        ascending: bool,
        skip: Key | None,
        count: int,
    ) -> list[str]:
        """The first `count` ids between the bounds when no filter applies: a slice, no loop.

        The cursor sits on a bound, so one key more than asked covers its being skipped.
        """
        if low > high:
            return []
        keys = list(islice(self._keys.irange(low, high, reverse=not ascending), count + 1))
        if skip is not None and skip in keys:
            keys.remove(skip)
        return [key[2] for key in keys[:count]]

    def _walk(
        self,
        low: Bound,
        high: Bound,
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
            object_id = key[2]
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
