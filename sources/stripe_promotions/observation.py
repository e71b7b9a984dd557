"""The ordering policy: which of two observations of one object is newer.

Every row of an object's raw table is one observation, and the transforms rank them by
(`_observed_at`, `_observed_rank`, `_observed_sequence`), newest first:

1. `_observed_at`: Stripe's clock in seconds (the Date header of the answer, an event's
   `created`, Stripe's clock as the last run measured it for a manual soft delete).
2. `_observed_rank`, a `Rank`, when two observations share a second.
3. `_observed_sequence`, when they also share a rank: the local clock in nanoseconds when
   the observation was made; events get consecutive numbers in Stripe's order, oldest first.

docs/OBSERVATIONS.md says the same for analysts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from itertools import count


class Rank(IntEnum):
    """Within one second of Stripe's clock, which kind of observation is newer."""

    # A list page, a retrieve, a batch object: it may predate a change made later in the
    # same second, so anything else of that second outranks it.
    READ = 1
    # Stripe's record of a change (from /v1/events or a saved webhook), and the re-reads a
    # run makes after its events for the fields events leave out (they saw those changes).
    EVENT = 2
    # A deletion learnt otherwise than from an event: Stripe answered 404, a batch said
    # `deleted`, or someone soft-deleted by hand. It wins its second.
    DELETION = 3


@dataclass(frozen=True)
class Deletion:
    """What an observation says about the object being gone."""

    at: int  # Stripe's second of the deletion (or when it was found gone)
    source: str  # event | not_found | batch | manual
    reason: str | None = None


@dataclass(frozen=True)
class Observation:
    """When and how a batch of objects was observed: every row it yields carries this."""

    observed_at: int
    rank: Rank
    sequence: int
    via: str  # list | full_listing | retrieve | event | batch | not_found | manual
    # The observation slot the row fills (its raw table's key is account + id + slot): one
    # per event, batch item or tombstone; for a read, one per way of reading and content seen
    # (`by_content`). A slot only ever receives newer observations.
    key: str
    api_version: str | None = None
    # The fields a partial observation carries (a batch patch; () for a tombstone);
    # None for a complete object. The transforms take each field from its newest carrier.
    patched_fields: tuple[str, ...] | None = None
    deletion: Deletion | None = None
    # A read: `key` is only the prefix, each row's slot is `<key>:<digest of the object as
    # received>` (rows.content_keys). A re-read of unchanged content refills its slot (the raw
    # table does not grow on quiet re-listings); changed content gets a slot of its own, so a
    # version only a read showed survives later reads (docs/HISTORY.md).
    by_content: bool = False


def sequence_now() -> int:
    """A sequence number for an observation made now: the local clock in nanoseconds."""
    return time.time_ns()


def event_sequences() -> Iterator[int]:
    """Consecutive sequence numbers from now, for events numbered in Stripe's order.

    Start it before reading the events: reading N events takes far longer than N
    nanoseconds, so anything observed after them gets a higher number.
    """
    return count(time.time_ns())


def read(
    observed_at: int,
    sequence: int,
    via: str,
    api_version: str | None = None,
    rank: Rank = Rank.READ,
) -> Observation:
    """A list page or a retrieve: each object's slot is the way of reading and its content
    (`<via>:<digest>`). A re-read after a run's events ranks with them (Rank.EVENT): it saw
    their changes."""
    return Observation(observed_at, rank, sequence, via, via, api_version, by_content=True)


def tombstone(observed_at: int, sequence: int, via: str, deletion: Deletion) -> Observation:
    """A deletion that carries no fields (404, batch `deleted`, manual): the object's fields
    stay as last observed."""
    return Observation(
        observed_at,
        Rank.DELETION,
        sequence,
        via,
        f"deletion:{via}:{observed_at}",
        patched_fields=(),
        deletion=deletion,
    )
