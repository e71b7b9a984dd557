"""One run: build the pipeline, finish an interrupted run, extract, normalize, load, transform."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt
from dlt.common.pipeline import get_dlt_pipelines_dir

from stripe_promotions import RunStats, SyncRequest, stripe_source
from stripe_promotions.settings import OBJECT_TYPES
from stripe_promotions_transforms import TableChanges, run_transforms

from .destination_state import reconcile
from .errors import (
    RunError,
    RunInterrupted,
    explain,
    interruption,
    is_terminal_load_failure,
    was_interrupted,
)
from .known_ids import checked_request
from .locking import RunLockedError, default_lock_wait, destination_run_lock, local_run_lock
from .progress import Progress
from .tuning import apply_duckdb_defaults, rare_gc_pauses, with_memory_to_spare

PIPELINE_NAME = "stripe_pipeline"
DATASET_NAME = "stripe_raw"
# Raw table → object type, in build order (promotion_codes reads stripe.coupons).
OBJECT_TABLES = {t.table: t.name for t in OBJECT_TYPES.values()}


class _ExpectedNotices(logging.Filter):
    """dlt warnings that say what the runner does on purpose: declared types (json, non-null
    id) differ from Arrow's; the local state was last used with another destination (each run
    makes the local state agree with its destination's first: destination_state.py)."""

    EXPECTED = ("several column hints were different", "in state differs from destination")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(expected in message for expected in self.EXPECTED)


EXPECTED_NOTICES = _ExpectedNotices()


@dataclass
class Settings:
    """Where to read from and load to; unset values come from dlt's config and the environment."""

    destination: str = "duckdb"
    api_base: str | None = None
    pipeline_name: str = PIPELINE_NAME
    dataset_name: str = DATASET_NAME
    pipelines_dir: str | None = None
    duckdb_file: str | None = None
    progress: bool = True
    source_options: dict[str, Any] = field(default_factory=dict)
    transforms_dir: Path | None = None  # another folder of transform SQL (default: transforms/)
    # Seconds to wait for another run of this pipeline (None: STRIPE_PIPELINE_LOCK_WAIT, or 5).
    lock_wait: float | None = None


@dataclass
class RunResult:
    """What a run did, for the summary."""

    request: SyncRequest
    stats: RunStats
    tables: list[TableChanges]
    seconds: float
    destination: str
    location: str
    resumed: bool
    notes: list[str]


def make_pipeline(settings: Settings) -> dlt.Pipeline:
    """The dlt pipeline `stripe_pipeline` loading into dataset `stripe_raw`."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    logging.getLogger("dlt").addFilter(EXPECTED_NOTICES)  # once: the same filter object
    if settings.destination == "duckdb":
        apply_duckdb_defaults()
    if settings.destination == "duckdb" and Path(duckdb_path(settings)).stem == "stripe":
        raise RunError(
            f"Name the DuckDB file something other than {duckdb_path(settings)!r}: DuckDB names "
            "its catalog after the file, and a catalog `stripe` beside the schema `stripe` "
            "makes stripe.coupons ambiguous. The default is stripe_pipeline.duckdb."
        )
    destination: Any = settings.destination
    if settings.destination == "duckdb" and settings.duckdb_file:
        destination = dlt.destinations.duckdb(settings.duckdb_file)
    pipeline: dlt.Pipeline = dlt.pipeline(
        pipeline_name=settings.pipeline_name,
        destination=destination,
        dataset_name=settings.dataset_name,
        pipelines_dir=settings.pipelines_dir,  # type: ignore[arg-type]  # None: dlt's default
    )
    return pipeline


def location(pipeline: dlt.Pipeline, settings: Settings) -> str:
    """Where the data is, in words a user can act on."""
    if settings.destination == "duckdb":
        return str(Path(duckdb_path(settings)).resolve())
    return f"{settings.destination}, schemas {settings.dataset_name} and stripe"


def duckdb_path(settings: Settings) -> str:
    """The DuckDB file this pipeline writes (dlt's default: <pipeline name>.duckdb here)."""
    if settings.duckdb_file:
        return settings.duckdb_file
    configured = os.environ.get("DESTINATION__DUCKDB__CREDENTIALS")
    return configured or f"{settings.pipeline_name}.duckdb"


def run_sync(request: SyncRequest, settings: Settings | None = None) -> RunResult:
    """Run one load (incremental, or one of the verbs) and the transforms after it."""
    settings = settings or Settings()
    started = time.monotonic()
    stats = RunStats()
    notes: list[str] = []
    pipeline: dlt.Pipeline | None = None
    progress = Progress(stats, enabled=settings.progress)
    try:
        with (
            rare_gc_pauses(),
            progress.shown(),
            one_run_at_a_time(settings, progress) as pipeline,
        ):
            reconciled = reconcile(pipeline)
            if reconciled:
                notes.append(reconciled)
            resumed = finish_interrupted_run(pipeline, progress, notes)
            request = checked_request(pipeline, request)
            options = dict(settings.source_options)
            if settings.api_base:
                options["api_base"] = settings.api_base
            source = stripe_source(request=request, stats=stats, check_now=True, **options)
            with progress.step("extracting"):
                pipeline.extract(source)
            with progress.step("normalizing"):
                pipeline.normalize()
            with progress.step("loading"):
                with_memory_to_spare(pipeline.load)
            with progress.step("transforming"):
                tables = with_memory_to_spare(lambda: transform(pipeline, settings))
    except (Exception, KeyboardInterrupt) as error:
        raise failure(error, pipeline, settings, progress.phase) from error
    return RunResult(
        request=request,
        stats=stats,
        tables=tables,
        seconds=time.monotonic() - started,
        destination=settings.destination,
        location=location(pipeline, settings),
        resumed=resumed,
        notes=notes + stats.notes,
    )


def run_transforms_only(settings: Settings | None = None) -> list[TableChanges]:
    """Rebuild the current-state tables from what is already loaded."""
    settings = settings or Settings()
    pipeline: dlt.Pipeline | None = None
    progress = Progress(RunStats(), enabled=False)
    try:
        with one_run_at_a_time(settings, progress) as pipeline, progress.step("transforming"):
            return with_memory_to_spare(lambda: transform(pipeline, settings))
    except (Exception, KeyboardInterrupt) as error:
        raise failure(error, pipeline, settings, progress.phase) from error


@contextmanager
def one_run_at_a_time(settings: Settings, progress: Progress) -> Iterator[dlt.Pipeline]:
    """The pipeline, while this run holds its locks (see locking.py): runs never interleave."""
    wait = default_lock_wait() if settings.lock_wait is None else settings.lock_wait

    def waiting(holder: str) -> None:
        progress.phase = "waiting"
        if progress.enabled:
            message = f"waiting up to {wait:g} s for {holder} to finish…"
            progress.console.print(message, highlight=False, soft_wrap=True)

    pipelines_dir = settings.pipelines_dir or get_dlt_pipelines_dir()
    with local_run_lock(pipelines_dir, settings.pipeline_name, wait, waiting):
        pipeline = make_pipeline(settings)
        with destination_run_lock(pipeline, wait, waiting):
            progress.phase = "starting"
            yield pipeline


def failure(
    error: BaseException, pipeline: dlt.Pipeline | None, settings: Settings, phase: str
) -> RunError | RunInterrupted:
    """What to raise for whatever stopped a run: Ctrl-C says what state things are in."""
    if was_interrupted(error):
        return interruption(phase, pending=has_pending_data(pipeline), pipeline=pipeline)
    if isinstance(error, RunLockedError):
        return error  # raised before anything was touched
    message = explain(
        error,
        destination=settings.destination,
        duckdb_file=duckdb_path(settings),
        pipelines_dir=pipeline.pipelines_dir if pipeline is not None else None,
    )
    if has_pending_data(pipeline) and not is_terminal_load_failure(error):
        message += (
            " The current-state tables are as the last complete run left them; the data "
            "extracted so far waits in the pipeline's working folder, and the next run loads "
            "it before anything else."
        )
    return RunError(message)


def has_pending_data(pipeline: dlt.Pipeline | None) -> bool:
    """Whether extracted data waits in the working folder to be normalized or loaded."""
    try:
        return pipeline is not None and pipeline.has_pending_data
    except Exception:
        return False


def transform(pipeline: dlt.Pipeline, settings: Settings) -> list[TableChanges]:
    """The SQL transforms, from the configured folder."""
    if settings.transforms_dir is None:
        return run_transforms(pipeline, OBJECT_TABLES)
    return run_transforms(pipeline, OBJECT_TABLES, settings.transforms_dir)


def finish_interrupted_run(pipeline: dlt.Pipeline, progress: Progress, notes: list[str]) -> bool:
    """Load what an interrupted run left behind, before extracting anything new.

    dlt's `run(data)` would load the leftovers and silently skip `data`; doing it here first
    means the run after a crash loads both.
    """
    if not pipeline.has_pending_data:
        return False
    with progress.step("resuming"):
        pipeline.normalize()
        with_memory_to_spare(pipeline.load)
    notes.append("Finished loading what an interrupted run had left, then ran as asked.")
    return True
