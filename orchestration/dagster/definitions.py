"""Dagster definitions for the Stripe pipeline, built with the `dagster-dlt` integration.

    dagster dev -m orchestration.dagster.definitions      # from the repository root

Two shapes, chosen from the configuration when the definitions load:

One process (the key's own account, one connected account, or any accounts on DuckDB, which
takes one writer at a time; the source then loads several accounts itself, overlapping them):
- `stripe_raw/*`: the dlt source `stripe` in incremental mode, one asset per dlt resource
  (`coupons`, `products`, `promotion_codes`: new objects by `created`; `events`: updates and
  deletions; `full_listing`: a re-listing when the events cursor is past Stripe's 30 days;
  `raw_tables`: creates the raw tables once). Loaded into the dataset `stripe_raw`.
- `stripe_raw/sync_all/*`: the same source with the full-listing request ("sync all"): every
  coupon, product and promotion code; an object no longer listed is flagged deleted.

Fan-out (Stripe Connect: `sources.stripe.accounts` "all" or several ids, on a destination that
takes several writers, e.g. PostgreSQL; STRIPE_PIPELINE_FAN_OUT=false keeps one process):
- `stripe_raw/accounts` and `stripe_raw/sync_all/accounts`: partitioned by account (dynamic
  partitions `stripe_accounts`, kept current by the sensor `stripe_accounts_sensor`). Each is a
  graph: one step per account of the run (its own dlt pipeline, `PipelineConfig.for_account`),
  so a run of a partition range (a backfill, or the schedules: every account) loads the
  accounts in parallel under the multiprocess executor, at most STRIPE_PIPELINE_ACCOUNTS_AT_ONCE
  (default 4) at a time. A backfill policy of one run per backfill keeps it one run.

Both shapes:
- `stripe/coupons`, `stripe/products`, `stripe/promotion_codes`: the current-state tables,
  one multi-asset because `transforms/` rebuilds all three in one transaction; once per run,
  after every load of the run.
- Jobs `stripe_incremental` (incremental load + current state, hourly from the schedule
  `stripe_hourly_incremental`), `stripe_sync_all` (full listing + current state, weekly from
  `stripe_weekly_sync_all`) and `stripe_rebuild_current_state` (the transforms alone).
  Schedules and the sensor start stopped: switch them on in the UI or with `dagster schedule
  start` / `dagster sensor start`.

Why sync all is a second asset and not op config: a run config switch would make one asset
definition load different things (the full-listing source has no `events` or per-type
resources), so Dagster would record materializations for resources that did not run. As its
own assets, each materialization says what happened, and the weekly job has its own history.

Configuration comes from the environment, read when the definitions load (the key only when a
run starts, or the sensor lists accounts, so the definitions load without it):
- `STRIPE_API_KEY` (or dlt's `SOURCES__STRIPE__API_KEY`, `.dlt/secrets.toml`): the Stripe key.
- `SOURCES__STRIPE__API_BASE`: another Stripe base URL (the emulator, in tests and demos).
- `SOURCES__STRIPE__ACCOUNTS`: Stripe Connect accounts (absent: the key's own; ids; "all").
- `STRIPE_PIPELINE_DESTINATION`: a dlt destination name, default `duckdb`.
- dlt's own settings for that destination, e.g. `DESTINATION__DUCKDB__CREDENTIALS=/path/x.duckdb`
  (default: `stripe_pipeline.duckdb` in the working directory),
  `DESTINATION__POSTGRES__CREDENTIALS=postgresql://...`; `DLT_DATA_DIR` for dlt's working folder.

The one-process loads and the transforms use the concurrency pool `stripe_pipeline`: with a
limit of 1 (`dagster instance concurrency set stripe_pipeline 1`) an hourly and a weekly run
never write the same dlt pipeline at once. A fan-out's account steps use the pool
`stripe_accounts` (a limit across runs, if wanted); its runs carry the tag `stripe/pipeline`
for a run-level limit of 1 (orchestration/README.md).
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import dlt
from dagster._core.definitions.metadata.table import TableSchema
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from dagster_dlt import DagsterDltResource, DagsterDltTranslator, dlt_assets
from dagster_dlt.translator import DltResourceTranslatorData
from dlt.common.schema import Schema
from dlt.extract.source import DltSource

from stripe_promotions import (
    RunStats,
    SyncRequest,
    stripe_source,
)
from stripe_promotions_pipeline.accounts import accounts_to_load
from stripe_promotions_pipeline.config import (
    OBJECT_TABLES,
    SYNC_ALL,
    PipelineConfig,
    make_pipeline,
)
from stripe_promotions_pipeline.errors import RunError, is_permanent
from stripe_promotions_pipeline.fanout import (
    accounts_at_once,
    failed_accounts_message,
    fans_out,
    load_account,
    rebuild_current_state,
)
from stripe_promotions_pipeline.tuning import tuned_run

POOL = "stripe_pipeline"
ACCOUNTS_POOL = "stripe_accounts"
RAW_GROUP = "stripe_raw"
SYNC_ALL_GROUP = "stripe_raw_sync_all"
CURRENT_GROUP = "stripe"
# A retried load starts over cleanly: dagster-dlt drops dlt's local state and pending packages
# and restores the state from the destination (run_sync does the same for a fan-out step), so
# the cursors only move with loaded data. Failures retrying cannot fix (a refused key, missing
# configuration) are not retried.
RETRIES = dg.RetryPolicy(max_retries=3, delay=300, backoff=dg.Backoff.EXPONENTIAL)
INCREMENTAL = SyncRequest()
# Stripe Connect accounts, one partition each, added and removed by the sensor.
ACCOUNT_PARTITIONS = "stripe_accounts"
ACCOUNTS = dg.DynamicPartitionsDefinition(name=ACCOUNT_PARTITIONS)
ACCOUNTS_SENSOR = "stripe_accounts_sensor"
SENSOR_INTERVAL = 300  # seconds between the sensor's listings of the connected accounts
# On every fan-out run: a run-level concurrency limit can key on it (orchestration/README.md).
FAN_OUT_TAGS = {"stripe/pipeline": "fan_out"}
HOURLY, WEEKLY = "0 * * * *", "30 3 * * 0"  # Sundays 03:30 UTC, away from the hourly run


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
    stats = RunStats()
    source: DltSource = stripe_source(request=request, stats=stats)
    try:
        with tuned_run():
            yield from dlt_resource.run(context=context, dlt_source=source, dlt_pipeline=pipeline)
    except Exception as error:
        raise dg.Failure(
            description=settings.explain(error),
            allow_retries=not is_permanent(error),
        ) from error
    failed = failed_accounts_message(stats)
    if failed:  # several accounts in this process: the others' data is loaded and recorded;
        # the next run tries the failed ones again (a retry now would reload them all)
        raise dg.Failure(description=failed, allow_retries=False)


def one_process_loads(settings: PipelineConfig) -> list[dg.AssetsDefinition]:
    """The source's resources as assets, loaded in one process (incremental, sync all)."""
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

    return [incremental_load, sync_all_load]


def account_loads(request: SyncRequest, settings: PipelineConfig) -> dg.AssetsDefinition:
    """One partitioned asset: a step per account of the run, each `load_account` for it."""
    name = request.mode  # its ops' names: `incremental_account`, `sync_all_account`, ...

    @dg.op(name=f"{name}_accounts", out=dg.DynamicOut(str))
    def accounts_of_run(context: dg.OpExecutionContext) -> Iterator[dg.DynamicOutput[str]]:
        """The run's accounts: its partition, or every partition of its range (a backfill)."""
        for account in context.partition_keys:
            yield dg.DynamicOutput(account, mapping_key=account)

    @dg.op(name=f"{name}_account", pool=ACCOUNTS_POOL)
    def load_one(context: dg.OpExecutionContext, account: str) -> dict[str, Any]:
        """One account's load with its own dlt pipeline, in a process of its own."""
        try:
            result = load_account(request, settings, account)
        except Exception as error:
            raise dg.Failure(
                description=settings.explain(error), allow_retries=not is_permanent(error)
            ) from error
        loaded = {
            "objects": sum(result.stats.rows.values()),
            "requests": result.stats.requests,
            "seconds": round(result.seconds, 1),
        }
        context.log.info(f"{account}: " + ", ".join(f"{n} {what}" for what, n in loaded.items()))
        return loaded

    @dg.op(name=f"{name}_loaded", out=dg.Out(dg.Nothing))
    def all_loaded(loads: list[dict[str, Any]]) -> Iterator[dg.Output[None]]:
        """Every account of the run loaded: the partitions' materialization."""
        yield dg.Output(
            None,
            metadata={
                "accounts": len(loads),
                "objects": sum(load["objects"] for load in loads),
                "requests": sum(load["requests"] for load in loads),
            },
        )

    sync_all = request.mode == "sync_all"

    @dg.graph_asset(
        name="accounts",
        key_prefix=[RAW_GROUP, "sync_all"] if sync_all else [RAW_GROUP],
        group_name=SYNC_ALL_GROUP if sync_all else RAW_GROUP,
        partitions_def=ACCOUNTS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"dlt", settings.destination},
        description=(
            "Every object of each account listed; objects no longer listed flagged deleted."
            if sync_all
            else "Each account's new objects, then its changes and deletions from its events."
        ),
    )
    def accounts() -> Any:
        return all_loaded(accounts_of_run().map(load_one).collect())

    return accounts


def current_state_asset(
    raw: Sequence[dg.AssetsDefinition], settings: PipelineConfig
) -> dg.AssetsDefinition:
    """The three current-state tables, rebuilt by the transforms after the raw assets."""
    raw_keys = [key for assets in raw for key in assets.keys]

    @dg.multi_asset(
        name="stripe_current_state",
        specs=[
            dg.AssetSpec(
                [CURRENT_GROUP, table],
                deps=raw_keys,
                group_name=CURRENT_GROUP,
                kinds={"sql", settings.destination},
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
            # Steps may run in other processes or containers: the schema and state of what is
            # in the destination come from there (fanout.rebuild_current_state).
            changes = rebuild_current_state(settings)
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

    return current_state


def accounts_sensor(settings: PipelineConfig) -> dg.SensorDefinition:
    """The sensor that keeps one partition per account the configuration selects."""

    @dg.sensor(name=ACCOUNTS_SENSOR, minimum_interval_seconds=SENSOR_INTERVAL)
    def stripe_accounts_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        """Add a partition for each new Stripe account, remove those no longer listed."""
        try:
            wanted = accounts_to_load(settings)
        except Exception as error:
            raise RunError(settings.explain(error)) from None  # the message only: no key
        known = context.instance.get_dynamic_partitions(ACCOUNT_PARTITIONS)
        new = [account for account in wanted if account not in set(known)]
        gone = [account for account in known if account not in set(wanted)]
        requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
        if new:
            requests.append(ACCOUNTS.build_add_request(new))
        if gone:
            requests.append(ACCOUNTS.build_delete_request(gone))
        context.log.info(f"{len(wanted)} accounts: {len(new)} new, {len(gone)} gone")
        return dg.SensorResult(
            dynamic_partitions_requests=requests,
            skip_reason=None if requests else f"The same {len(wanted)} accounts.",
        )

    return stripe_accounts_sensor


def every_account(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """A fan-out schedule's run: every account partition, as one range (one run)."""
    accounts = context.instance.get_dynamic_partitions(ACCOUNT_PARTITIONS)
    if not accounts:
        return dg.SkipReason(
            f"No Stripe accounts yet: switch on the sensor {ACCOUNTS_SENSOR}, which adds them."
        )
    return dg.RunRequest(tags=account_range(accounts))


def account_range(accounts: Sequence[str]) -> dict[str, str]:
    """Run tags for a run of every partition from the first account to the last."""
    return {
        ASSET_PARTITION_RANGE_START_TAG: accounts[0],
        ASSET_PARTITION_RANGE_END_TAG: accounts[-1],
    }


def build_definitions() -> dg.Definitions:
    """Assets, jobs and schedules, configured from the environment (see the module docstring)."""
    settings = PipelineConfig.from_env()
    fan_out = fans_out(settings)
    if fan_out:
        incremental_load = account_loads(INCREMENTAL, settings)
        sync_all_load = account_loads(SYNC_ALL, settings)
    else:
        incremental_load, sync_all_load = one_process_loads(settings)
    current_state = current_state_asset([incremental_load, sync_all_load], settings)

    # A fan-out job: its account steps in processes of their own, so many at once. The
    # executor is part of the job (not run config): a run of a partition range, which is how
    # a backfill or a schedule runs every account, gets no partition's run config.
    options: dict[str, Any] = {"op_retry_policy": RETRIES}
    if fan_out:
        executor = {"max_concurrent": accounts_at_once(), "start_method": {"forkserver": {}}}
        options |= {
            "executor_def": dg.multiprocess_executor.configured(executor),
            "tags": FAN_OUT_TAGS,
        }
    incremental_job = dg.define_asset_job(
        "stripe_incremental",
        selection=dg.AssetSelection.assets(incremental_load, current_state),
        description="Incremental load (new objects, events) and the current-state tables.",
        **options,
    )
    sync_all_job = dg.define_asset_job(
        "stripe_sync_all",
        selection=dg.AssetSelection.assets(sync_all_load, current_state),
        description="Full listing of every object (sync all) and the current-state tables.",
        **options,
    )
    current_state_job = dg.define_asset_job(
        "stripe_rebuild_current_state",
        selection=dg.AssetSelection.assets(current_state),
        description="The current-state tables, rebuilt from what is loaded.",
    )
    return dg.Definitions(
        assets=[incremental_load, sync_all_load, current_state],
        jobs=[incremental_job, sync_all_job, current_state_job],
        schedules=[
            dg.ScheduleDefinition(
                name="stripe_hourly_incremental",
                job=incremental_job,
                cron_schedule=HOURLY,
                execution_timezone="UTC",
                execution_fn=every_account if fan_out else None,
            ),
            dg.ScheduleDefinition(
                name="stripe_weekly_sync_all",
                job=sync_all_job,
                cron_schedule=WEEKLY,
                execution_timezone="UTC",
                execution_fn=every_account if fan_out else None,
            ),
        ],
        sensors=[accounts_sensor(settings)] if fan_out else [],
        resources={"dlt": StripeDltResource()},
    )


@dg.definitions
def defs() -> dg.Definitions:
    """What `dagster dev -m orchestration.dagster.definitions` loads (lazily: nothing at import)."""
    return build_definitions()
