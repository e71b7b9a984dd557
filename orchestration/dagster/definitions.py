"""Dagster definitions for the Stripe pipeline, built with the `dagster-dlt` integration.

    dagster dev -m orchestration.dagster.definitions      # from the repository root

Assets (three groups):
- `stripe_raw/*`: the dlt source `stripe` in incremental mode, one asset per dlt resource
  (`coupons`, `products`, `promotion_codes`: new objects by `created`; `events`: updates and
  deletions; `full_listing`: a re-listing when the events cursor is past Stripe's 30 days;
  `raw_tables`: creates the raw tables once). Loaded into the dataset `stripe_raw`.
- `stripe_raw/sync_all/*`: the same source with the full-listing request ("sync all"): every
  coupon, product and promotion code; an object no longer listed is flagged deleted.
- `stripe/coupons`, `stripe/products`, `stripe/promotion_codes`: the current-state tables,
  one multi-asset because `transforms/` rebuilds all three in one transaction.

Jobs and schedules: `stripe_incremental` (incremental load + current state) runs hourly from
the schedule `stripe_hourly_incremental`; `stripe_sync_all` (full listing + current state) runs
weekly from `stripe_weekly_sync_all`. Both schedules start stopped: switch them on in the UI or
with `dagster schedule start`.

Why sync all is a second `@dlt_assets` and not op config: a run config switch would make one
asset definition load different things (the full-listing source has no `events` or per-type
resources), so Dagster would record materializations for resources that did not run. As its
own assets, each materialization says what happened, and the weekly job has its own history.

Configuration comes from the environment, read when the definitions load (the key only when a
run starts, so the definitions load without it):
- `STRIPE_API_KEY` (or dlt's `SOURCES__STRIPE__API_KEY`, `.dlt/secrets.toml`): the Stripe key.
- `SOURCES__STRIPE__API_BASE`: another Stripe base URL (the emulator, in tests and demos).
- `STRIPE_PIPELINE_DESTINATION`: a dlt destination name, default `duckdb`.
- dlt's own settings for that destination, e.g. `DESTINATION__DUCKDB__CREDENTIALS=/path/x.duckdb`
  (default: `stripe_pipeline.duckdb` in the working directory),
  `DESTINATION__POSTGRES__CREDENTIALS=postgresql://...`; `DLT_DATA_DIR` for dlt's working folder.

All three ops use the concurrency pool `stripe_pipeline`: with a limit of 1
(`dagster instance concurrency set stripe_pipeline 1`) an hourly and a weekly run never write
the same dlt pipeline at once.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
import dlt
from dagster._core.definitions.metadata.table import TableSchema
from dagster_dlt import DagsterDltResource, DagsterDltTranslator, dlt_assets
from dagster_dlt.translator import DltResourceTranslatorData
from dlt.common.schema import Schema
from dlt.extract.source import DltSource

from stripe_promotions import (
    SyncRequest,
    stripe_source,
)
from stripe_promotions_pipeline.config import (
    OBJECT_TABLES,
    SYNC_ALL,
    PipelineConfig,
    make_pipeline,
)
from stripe_promotions_pipeline.errors import is_permanent
from stripe_promotions_pipeline.runner import build_current_state
from stripe_promotions_pipeline.tuning import tuned_run

POOL = "stripe_pipeline"
RAW_GROUP = "stripe_raw"
SYNC_ALL_GROUP = "stripe_raw_sync_all"
CURRENT_GROUP = "stripe"
# A retried load starts over cleanly: dagster-dlt drops dlt's local state and pending packages
# and restores the state from the destination, so the cursors only move with loaded data.
# Failures retrying cannot fix (a refused key, missing configuration) are not retried.
RETRIES = dg.RetryPolicy(max_retries=3, delay=300, backoff=dg.Backoff.EXPONENTIAL)
INCREMENTAL = SyncRequest()


@dataclass
class StripeTranslator(DagsterDltTranslator):
    """Asset keys `stripe_raw/<resource>` (plus a prefix for sync all), no made-up upstreams."""

    key_prefix: tuple[str, ...] = (RAW_GROUP,)
    group: str = RAW_GROUP

    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        spec = super().get_asset_spec(data)
        return spec.replace_attributes(
            key=dg.AssetKey([*self.key_prefix, data.resource.name]),
            deps=[],  # dagster-dlt's default is a placeholder asset `stripe_<resource>`
            group_name=self.group,
        )


class StripeDltResource(DagsterDltResource):
    """dagster-dlt's resource, without its schema mutation (dagster-io/dagster#34052).

    dagster-dlt 0.29.27 builds each asset's column metadata by popping `name` and `data_type`
    off the pipeline's live schema, which is then saved without column types: the transforms
    could no longer expand the raw tables' columns. It gets a copy of the schema here.
    """

    def _extract_table_schema_metadata(self, table_name: str, schema: Schema) -> TableSchema:
        return super()._extract_table_schema_metadata(table_name, schema.clone())


def load_raw(
    context: dg.AssetExecutionContext,
    dlt_resource: DagsterDltResource,
    request: SyncRequest,
    pipeline: dlt.Pipeline,
    settings: PipelineConfig,
) -> Iterator[Any]:
    """Run the source for `request`, built now (a fresh plan per run), all resources at once."""
    if context.is_subset:
        raise dg.Failure(
            allow_retries=False,
            description=(
                "Materialize the Stripe raw assets of this group together: the source's "
                "resources share one plan per run (the events cursor starts where the listings "
                "end), so a subset would lose updates. Selected: "
                + ", ".join(key.to_user_string() for key in sorted(context.selected_asset_keys))
            ),
        )
    # Built per run, not at import: the source reads Stripe's clock once per instance, and the
    # key and base URL are read from the environment the run has.
    source: DltSource = stripe_source(request=request)
    try:
        with tuned_run():
            yield from dlt_resource.run(context=context, dlt_source=source, dlt_pipeline=pipeline)
    except Exception as error:
        raise dg.Failure(
            description=settings.explain(error),
            allow_retries=not is_permanent(error),
        ) from error


def build_definitions() -> dg.Definitions:
    """Assets, jobs and schedules, configured from the environment (see the module docstring)."""
    settings = PipelineConfig.from_env()
    pipeline = make_pipeline(settings)
    incremental_translator = StripeTranslator()
    sync_all_translator = StripeTranslator(key_prefix=(RAW_GROUP, "sync_all"), group=SYNC_ALL_GROUP)

    @dlt_assets(
        dlt_source=stripe_source(request=INCREMENTAL),
        dlt_pipeline=pipeline,
        name="stripe_incremental_load",
        dagster_dlt_translator=incremental_translator,
        pool=POOL,
    )
    def incremental_load(context: dg.AssetExecutionContext, dlt: DagsterDltResource) -> Any:
        """New objects, then changes and deletions from Stripe's events, into `stripe_raw`."""
        yield from load_raw(context, dlt, INCREMENTAL, pipeline, settings)

    @dlt_assets(
        dlt_source=stripe_source(request=SYNC_ALL),
        dlt_pipeline=pipeline,
        name="stripe_sync_all_load",
        dagster_dlt_translator=sync_all_translator,
        pool=POOL,
    )
    def sync_all_load(context: dg.AssetExecutionContext, dlt: DagsterDltResource) -> Any:
        """Every object listed; objects Stripe no longer lists are flagged deleted."""
        yield from load_raw(context, dlt, SYNC_ALL, pipeline, settings)

    raw_keys = [*incremental_load.keys, *sync_all_load.keys]

    @dg.multi_asset(
        name="stripe_current_state",
        specs=[
            dg.AssetSpec(
                [CURRENT_GROUP, table],
                deps=raw_keys,
                group_name=CURRENT_GROUP,
                kinds={"sql", pipeline.destination.destination_name},
                description=(
                    f"Current state of every {table} ever seen, with is_deleted and deleted_at "
                    f"(transforms/{table}.sql)."
                ),
            )
            for table in OBJECT_TABLES
        ],
        can_subset=False,
        pool=POOL,
    )
    def current_state(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult[Any]]:
        """Rebuild stripe.coupons, stripe.products, stripe.promotion_codes in one transaction."""
        try:
            # Another process (or a fresh container) may have loaded: take the schema and state
            # of what is in the destination before reading it.
            pipeline.sync_destination()
            changes = build_current_state(pipeline, settings)
        except Exception as error:
            raise dg.Failure(description=settings.explain(error)) from error
        for change in changes:
            context.log.info(
                f"stripe.{change.table}: {change.rows} rows, {change.new} new, "
                f"{change.updated} updated, {change.deleted} newly deleted"
            )
            yield dg.MaterializeResult(
                asset_key=[CURRENT_GROUP, change.table],
                metadata={
                    "dagster/row_count": change.rows,
                    "dagster/table_name": f"{CURRENT_GROUP}.{change.table}",
                    "new": change.new,
                    "updated": change.updated,
                    "newly_deleted": change.deleted,
                },
            )

    incremental_job = dg.define_asset_job(
        "stripe_incremental",
        selection=dg.AssetSelection.assets(incremental_load, current_state),
        description="Incremental load (new objects, events) and the current-state tables.",
        op_retry_policy=RETRIES,
    )
    sync_all_job = dg.define_asset_job(
        "stripe_sync_all",
        selection=dg.AssetSelection.assets(sync_all_load, current_state),
        description="Full listing of every object (sync all) and the current-state tables.",
        op_retry_policy=RETRIES,
    )
    return dg.Definitions(
        assets=[incremental_load, sync_all_load, current_state],
        jobs=[incremental_job, sync_all_job],
        schedules=[
            dg.ScheduleDefinition(
                name="stripe_hourly_incremental",
                job=incremental_job,
                cron_schedule="0 * * * *",
                execution_timezone="UTC",
            ),
            dg.ScheduleDefinition(
                name="stripe_weekly_sync_all",
                job=sync_all_job,
                cron_schedule="30 3 * * 0",  # Sundays 03:30 UTC, away from the hourly run
                execution_timezone="UTC",
            ),
        ],
        resources={"dlt": StripeDltResource()},
    )


@dg.definitions
def defs() -> dg.Definitions:
    """What `dagster dev -m orchestration.dagster.definitions` loads (lazily: nothing at import)."""
    return build_definitions()
