"""Several iterators drained at once, their items merged as they come."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
# Items each producer may have ready before it waits for the consumer: memory stays bounded.
WAITING_PER_PRODUCER = 2


def interleaved(iterables: Iterable[Iterable[T]], at_most: int | None = None) -> Iterator[T]:
    """The items of every iterable, drained in threads (`at_most` at once; default one each),
    in arrival order.

    Listings of different object types are different rate-limited operations: read one after
    another, each waits on its own limit while the account's budget goes unused. An error in
    any producer stops the others and is raised here; so does closing this iterator.
    """
    sources = list(iterables)
    if len(sources) <= 1:
        for source in sources:
            yield from source
        return
    ready: queue.Queue[tuple[str, object]] = queue.Queue(
        WAITING_PER_PRODUCER * min(len(sources), at_most or len(sources))
    )
    stop = threading.Event()

    def put(kind: str, value: object) -> bool:
        while not stop.is_set():
            try:
                ready.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    waiting = iter(sources)
    taking = threading.Lock()

    def drain() -> None:
        while True:
            with taking:
                source = next(waiting, None)
            if source is None:
                return
            try:
                for item in source:
                    if not put("item", item):
                        return
            except BaseException as error:  # handed to the consumer, which raises it
                put("error", error)
                return
            put("done", None)

    workers = min(len(sources), at_most or len(sources))
    threads = [
        threading.Thread(target=drain, name="stripe-interleave", daemon=True)
        for _ in range(workers)
    ]
    for thread in threads:
        thread.start()
    try:
        running = len(sources)
        while running:
            kind, value = ready.get()
            if kind == "item":
                yield value  # type: ignore[misc]
            elif kind == "done":
                running -= 1
            else:
                assert isinstance(value, BaseException)
                raise value
    finally:
        stop.set()
        for thread in threads:
            thread.join()
