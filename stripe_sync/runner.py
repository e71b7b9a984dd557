"""One run: build the pipeline, finish an interrupted run, extract, normalize, load, transform."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt

from sources.stripe_promotions import RunStats, SyncRequest, stripe_source
from transforms import TableChanges, run_transforms

from .errors import RunError, explain
from .progress import Progress

PIPELINE_NAME = "stripe_pipeline"
DATASET_NAME = "stripe_raw"


class _ExpectedHintNotice(logging.Filter):
    """dlt warns that declared types (json, non-null id) differ from Arrow's: that is the point."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "several column hints were different" not in record.getMessage()


logging.getLogger("dlt").addFilter(_ExpectedHintNotice())


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
    try:
        pipeline = make_pipeline(settings)
        progress = Progress(stats, enabled=settings.progress)
        with progress.shown():
            resumed = finish_interrupted_run(pipeline, progress, notes)
            options = dict(settings.source_options)
            if settings.api_base:
                options["api_base"] = settings.api_base
            source = stripe_source(request=request, stats=stats, **options)
            with progress.step("extracting"):
                pipeline.extract(source)
            with progress.step("normalizing"):
                pipeline.normalize()
            with progress.step("loading"):
                pipeline.load()
            with progress.step("transforming"):
                tables = transform(pipeline, settings)
    except Exception as error:
        raise RunError(
            explain(
                error,
                destination=settings.destination,
                duckdb_file=duckdb_path(settings),
            )
        ) from error
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
    try:
        pipeline = make_pipeline(settings)
        return transform(pipeline, settings)
    except Exception as error:
        raise RunError(
            explain(
                error,
                destination=settings.destination,
                duckdb_file=duckdb_path(settings),
            )
        ) from error


def transform(pipeline: dlt.Pipeline, settings: Settings) -> list[TableChanges]:
    """The SQL transforms, from the configured folder."""
    if settings.transforms_dir is None:
        return run_transforms(pipeline)
    return run_transforms(pipeline, settings.transforms_dir)


def finish_interrupted_run(pipeline: dlt.Pipeline, progress: Progress, notes: list[str]) -> bool:
    """Load what an interrupted run left behind, before extracting anything new.

    dlt's `run(data)` would load the leftovers and silently skip `data`; doing it here first
    means the run after a crash loads both.
    """
    if not pipeline.has_pending_data:
        return False
    with progress.step("resuming"):
        pipeline.normalize()
        pipeline.load()
    notes.append("Finished loading what an interrupted run had left, then ran as asked.")
    return True
