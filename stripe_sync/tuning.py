"""Process defaults that keep a run fast and its memory bounded; a user's own settings win.

Measured in benchmarks/RESULTS.md (issue 8): DuckDB sizes its thread pool from the machine's
cores, not the ones this process may use, and its buffer pool from 80% of RAM; bounding both
keeps the load and the transforms of a 1,000,000-code account within the same memory as a
100,000-code one. Outside Airflow, dlt's probe for Airflow's secrets costs 2-3 s and ~95 MB
per run once the orchestration extra is installed. A run allocates millions of short-lived
dicts (parsed pages) that reference counting frees on its own; at Python's default thresholds
the cyclic garbage collector still traverses them ~800 times, and the whole heap ~6 times, per
120,000 objects: 0.9 s of a 6 s run. (The command also picks Arrow's allocator, which must
happen before pyarrow is imported: see pipelines/stripe_pipeline.py.)
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

import dlt

DUCKDB_GLOBAL_CONFIG = "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"
# DuckDB spills to disk beyond this; the load and transforms of 1,000,000 codes run within it
# (peak 311 MB at 75MB, 340 MB at 100MB: benchmarks/RESULTS.md).
DUCKDB_MEMORY_LIMIT = "75MB"
# Cyclic GC thresholds during a run: a young collection per 50,000 net new containers instead
# of 700 (GC time per backfill of 120,000 objects: 0.96 s at the defaults, 0.05-0.15 s with these).
RUN_GC_THRESHOLDS = (50_000, 20, 10)


def usable_cores() -> int:
    """Cores this process may run on (its affinity, which containers and `taskset` narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def apply_duckdb_defaults() -> None:
    """Threads and memory limit for DuckDB, unless dlt's config already sets `global_config`."""
    if os.environ.get(DUCKDB_GLOBAL_CONFIG):
        return
    if dlt.secrets.get("destination.duckdb.credentials.global_config") is not None:
        return
    settings = {"threads": usable_cores(), "memory_limit": DUCKDB_MEMORY_LIMIT}
    os.environ[DUCKDB_GLOBAL_CONFIG] = json.dumps(settings)


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
