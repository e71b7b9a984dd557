"""One run: build the pipeline, finish an interrupted run, extract, normalize, load, transform."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dlt
from dlt.common.pipeline import get_dlt_pipelines_dir

from stripe_promotions import RunStats, SyncRequest, stripe_source
from stripe_promotions_transforms import TableChanges, run_transforms
from stripe_promotions_transforms.runner import HERE as DEFAULT_SQL_DIR

from .config import OBJECT_TABLES, PipelineConfig, make_pipeline
from .destination_state import adopt_loaded_schema, reconcile
from .errors import (
    RunError,
    RunInterrupted,
    interruption,
    is_terminal_load_failure,
    was_interrupted,
)
from .known_ids import checked_request
from .locking import RunLockedError, default_lock_wait, destination_run_lock, local_run_lock
from .progress import Progress
from .tuning import prepare_process, tuned_run, with_memory_to_spare


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

    @property
    def partly_failed(self) -> bool:
        """Some accounts failed (named in `stats.failed_accounts`); the others loaded."""
        return bool(self.stats.failed_accounts)


def run_sync(request: SyncRequest, settings: PipelineConfig | None = None) -> RunResult:
    """Run one load (incremental, or one of the verbs) and the transforms after it."""
    settings = settings or PipelineConfig()
    started = time.monotonic()
    stats = RunStats()
    notes: list[str] = []
    pipeline: dlt.Pipeline | None = None
    progress = Progress(stats, enabled=settings.progress)
    try:
        with (
            tuned_run(),
            progress.shown(),
            one_run_at_a_time(settings, progress) as pipeline,
        ):
            reconciled = reconcile(pipeline)
            if reconciled:
                notes.append(reconciled)
            resumed = finish_interrupted_run(pipeline, progress, notes)
            account = settings.single_account() or own_account(pipeline)
            request = checked_request(pipeline, request, account)
            options = dict(settings.source_options)
            if settings.api_base:
                options["api_base"] = settings.api_base
            if settings.accounts is not None:
                options["accounts"] = settings.accounts
            source = stripe_source(request=request, stats=stats, check_now=True, **options)
            with progress.step("extracting"):
                pipeline.extract(source)
            with progress.step("normalizing"):
                pipeline.normalize()
            with progress.step("loading"):
                with_memory_to_spare(pipeline.load)
            tables = []
            if settings.transform:
                with progress.step("transforming"):
                    tables = build_current_state(pipeline, settings)
    except (Exception, KeyboardInterrupt) as error:
        raise failure(error, pipeline, settings, progress.phase) from error
    if stats.failed_accounts and len(stats.failed_accounts) == len(stats.accounts):
        reasons = "; ".join(f"{a}: {why}" for a, why in sorted(stats.failed_accounts.items()))
        raise RunError(f"Every account failed, nothing new was loaded. {reasons}")
    return RunResult(
        request=request,
        stats=stats,
        tables=tables,
        seconds=time.monotonic() - started,
        destination=settings.destination,
        location=settings.location(),
        resumed=resumed,
        notes=notes + stats.notes,
    )


def run_transforms_only(
    settings: PipelineConfig | None = None, full: bool = False
) -> list[TableChanges]:
    """Bring the current-state and history tables up to date with what is already loaded
    (`full`: rebuild them from every observation)."""
    settings = settings or PipelineConfig()
    pipeline: dlt.Pipeline | None = None
    progress = Progress(RunStats(), enabled=False)
    try:
        with one_run_at_a_time(settings, progress) as pipeline, progress.step("transforming"):
            reconcile(pipeline)  # read the raw tables the destination holds, as dlt knows them
            adopt_loaded_schema(pipeline)  # and those other pipelines loaded (a fan-out's)
            return build_current_state(pipeline, settings, full)
    except (Exception, KeyboardInterrupt) as error:
        raise failure(error, pipeline, settings, progress.phase) from error


@contextmanager
def one_run_at_a_time(settings: PipelineConfig, progress: Progress) -> Iterator[dlt.Pipeline]:
    """The pipeline, while this run holds its locks (see locking.py): runs never interleave."""
    wait = default_lock_wait() if settings.lock_wait is None else settings.lock_wait

    def waiting(holder: str) -> None:
        progress.phase = "waiting"
        if progress.enabled:
            message = f"waiting up to {wait:g} s for {holder} to finish…"
            progress.console.print(message, highlight=False, soft_wrap=True)

    prepare_process(duckdb=settings.destination == "duckdb")  # before dlt reads its config
    pipelines_dir = settings.pipelines_dir or get_dlt_pipelines_dir()
    with local_run_lock(pipelines_dir, settings.pipeline_name, wait, waiting):
        pipeline = make_pipeline(settings)
        with destination_run_lock(pipeline, wait, waiting):
            progress.phase = "starting"
            yield pipeline


def failure(
    error: BaseException, pipeline: dlt.Pipeline | None, settings: PipelineConfig, phase: str
) -> RunError | RunInterrupted:
    """What to raise for whatever stopped a run: Ctrl-C says what state things are in."""
    if was_interrupted(error):
        return interruption(phase, pending=has_pending_data(pipeline), pipeline=pipeline)
    if isinstance(error, RunLockedError):
        return error  # raised before anything was touched
    message = settings.explain(error, pipeline.pipelines_dir if pipeline is not None else None)
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


def build_current_state(
    pipeline: dlt.Pipeline, config: PipelineConfig, full: bool = False
) -> list[TableChanges]:
    """The SQL transforms (from the configured folder) for the object-type table's types; on
    DuckDB, once more under DuckDB's own memory limit if ours was too small."""

    sql_dir = config.transforms_dir or DEFAULT_SQL_DIR

    def transform() -> list[TableChanges]:
        return run_transforms(pipeline, OBJECT_TABLES, sql_dir, own_account(pipeline), full)

    return with_memory_to_spare(transform)


def own_account(pipeline: dlt.Pipeline) -> str | None:
    """The key's own account id, as the source noted it in its state (None before a load)."""
    source: dict[str, Any] = pipeline.state.get("sources", {}).get("stripe", {})
    found = source.get("own_account")
    return str(found) if found else None


def drop_normalized_remnants(pipeline: dlt.Pipeline) -> None:
    """dlt's normalize commits a load package, then deletes the extracted one it came from: a
    run killed while deleting leaves part of it, which every later normalize fails on. Its
    data is in the load package: drop the remnant."""
    done = {*pipeline.list_normalized_load_packages(), *pipeline.list_completed_load_packages()}
    remnants = [i for i in pipeline.list_extracted_load_packages() if i in done]
    if remnants:
        extracted = pipeline._get_normalize_storage().extracted_packages
        for load_id in remnants:
            extracted.delete_package(load_id)


def finish_interrupted_run(pipeline: dlt.Pipeline, progress: Progress, notes: list[str]) -> bool:
    """Load what an interrupted run left behind, before extracting anything new.

    dlt's `run(data)` would load the leftovers and silently skip `data`; doing it here first
    means the run after a crash loads both.
    """
    drop_normalized_remnants(pipeline)
    if not pipeline.has_pending_data:
        return False
    with progress.step("resuming"):
        pipeline.normalize()
        with_memory_to_spare(pipeline.load)
    notes.append("Finished loading what an interrupted run had left, then ran as asked.")
    return True
