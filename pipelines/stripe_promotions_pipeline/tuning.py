"""Process defaults that keep a run fast and its memory bounded; a user's own settings win.

Measured in benchmarks/RESULTS.md (issue 8, and "DuckDB's memory" after it): DuckDB sizes
its thread pool from the machine's cores, not the ones this process may use, and its buffer pool
from 80% of RAM. A smaller buffer pool, sized by threads, keeps a run's memory low: sorts, joins
and aggregates spill to the database's temporary folder beyond it. But the window functions of
dlt's merge and of the transforms need working memory that grows with the rows and the threads,
so no fixed limit fits every account: a step that runs out of memory under ours runs once more
under DuckDB's own default. Outside Airflow, dlt's probe for Airflow's secrets costs 2-3 s and
~95 MB per run once the orchestration extra is installed. A run allocates millions of
short-lived dicts (parsed pages) that reference counting frees on its own; at Python's default
thresholds the cyclic garbage collector still traverses them ~800 times, and the whole heap ~6
times, per 120,000 objects: 0.9 s of a 6 s run. Arrow's default allocator (mimalloc) keeps
freed pages; the system allocator peaked ~60 MB lower at the same speed.

Every entry point gets the same: `make_pipeline` calls `prepare_process`, and a run (the
command's, a verb's, a Dagster or Airflow load) goes inside `tuned_run`. Nothing is changed
at import time.
"""

from __future__ import annotations

import gc
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import dlt
import duckdb
import pyarrow as pa

# dlt's switch for `_dlt_load_id` on Arrow tables: the transforms recompute the objects of
# the loads they have not applied yet (transforms/.../incremental.py), found by that column.
LOAD_IDS = "NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_LOAD_ID"

DUCKDB_GLOBAL_CONFIG = "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"
# DuckDB's buffer pool on a step's first try: this much per thread, and never less than the
# floor (dlt's merge and the transforms' windows need working memory per thread).
DUCKDB_MB_PER_THREAD = 64
DUCKDB_MIN_MB = 128
# Cyclic GC thresholds during a run: a young collection per 50,000 net new containers instead
# of 700 (GC time per backfill of 120,000 objects: 0.96 s at the defaults, 0.05-0.15 s with these).
RUN_GC_THRESHOLDS = (50_000, 20, 10)

T = TypeVar("T")


class _ExpectedNotices(logging.Filter):
    """dlt warnings that say what the runner does on purpose: declared types (json, non-null
    id) differ from Arrow's; the local state was last used with another destination (each run
    makes the local state agree with its destination's first: destination_state.py)."""

    EXPECTED = ("several column hints were different", "in state differs from destination")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(expected in message for expected in self.EXPECTED)


EXPECTED_NOTICES = _ExpectedNotices()


def prepare_process(*, duckdb: bool) -> None:
    """The process defaults a run needs, set before its pipeline is built; idempotent, and a
    user's own setting of any of them wins."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ[LOAD_IDS] = "true"  # not a default: the transforms need it (LOAD_IDS)
    skip_airflow_secrets()
    logging.getLogger("dlt").addFilter(EXPECTED_NOTICES)  # the same object: added once
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        pa.set_memory_pool(pa.system_memory_pool())
    if duckdb:
        apply_duckdb_defaults()


@contextmanager
def tuned_run() -> Iterator[None]:
    """Around one run's extract, normalize, load and transforms, whoever runs them."""
    with rare_gc_pauses():
        yield


def usable_cores() -> int:
    """Cores this process may run on (its affinity, which containers and `taskset` narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def duckdb_settings() -> dict[str, Any]:
    """DuckDB's threads (the usable cores) and a buffer pool sized by them, as `global_config`."""
    threads = usable_cores()
    megabytes = max(DUCKDB_MIN_MB, DUCKDB_MB_PER_THREAD * threads)
    return {"threads": threads, "memory_limit": f"{megabytes}MB"}


def apply_duckdb_defaults() -> None:
    """Threads and memory limit for DuckDB, unless dlt's config already sets `global_config`."""
    if os.environ.get(DUCKDB_GLOBAL_CONFIG):
        return
    if dlt.secrets.get("destination.duckdb.credentials.global_config") is not None:
        return
    os.environ[DUCKDB_GLOBAL_CONFIG] = json.dumps(duckdb_settings())


def ran_out_of_memory(error: BaseException) -> bool:
    """Whether DuckDB refused a statement for want of memory (dlt wraps its exception)."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        if isinstance(current, duckdb.OutOfMemoryException):
            return True
        seen.append(current)
        current = current.__cause__ or current.__context__ or getattr(current, "exception", None)
    return False


def with_memory_to_spare(step: Callable[[], T]) -> T:
    """Run a DuckDB step; if it ran out of memory under our limit, run it once more without it.

    DuckDB's own default (most of the RAM, or of the container's limit) then applies, for this
    step only. A limit the user set is never lifted: their config is not ours.
    """
    ours = duckdb_settings()
    try:
        return step()
    except Exception as error:
        if not ran_out_of_memory(error) or os.environ.get(DUCKDB_GLOBAL_CONFIG) != json.dumps(ours):
            raise
    unlimited = {name: value for name, value in ours.items() if name != "memory_limit"}
    os.environ[DUCKDB_GLOBAL_CONFIG] = json.dumps(unlimited)
    try:
        return step()
    finally:
        os.environ[DUCKDB_GLOBAL_CONFIG] = json.dumps(ours)


def skip_airflow_secrets() -> None:
    """Outside an Airflow task, tell dlt not to look for Airflow's secrets provider."""
    if "AIRFLOW_CTX_DAG_ID" not in os.environ:
        os.environ.setdefault("PROVIDERS__ENABLE_AIRFLOW_SECRETS", "false")


@contextmanager
def rare_gc_pauses() -> Iterator[None]:
    """Raise the cyclic GC's thresholds for the duration of a run, then restore the caller's.

    Thresholds a user set higher stay; a disabled collector stays disabled.
    """
    before = gc.get_threshold()
    if before[0] > 0:
        raised = zip(RUN_GC_THRESHOLDS, before, strict=True)
        gc.set_threshold(*(max(mine, theirs) for mine, theirs in raised))
    try:
        yield
    finally:
        gc.set_threshold(*before)
