"""Airflow DAG `stripe_pipeline`: the Stripe source, then the transforms; one of two shapes,
chosen by the destination (STRIPE_PIPELINE_DESTINATION) when the DAG file is parsed.

DuckDB and MotherDuck (one writer at a time): dlt's Airflow helper runs the whole source in one
task, every configured Stripe account in it (the source overlaps several accounts itself):

    load.stripe_pipeline  ->  transform        hourly, at most one run at a time, with retries

Any other destination (PostgreSQL, Snowflake, BigQuery): dynamic task mapping over the Stripe
Connect accounts, each loaded with a dlt pipeline of its own (`PipelineConfig.for_account`), at
most STRIPE_PIPELINE_ACCOUNTS_AT_ONCE (default 4) at a time per run:

    accounts  ->  load[0..n]  ->  transform

`accounts` lists them when the run starts (`sources.stripe.accounts`: "all" is the key's own
account and every connected account Stripe lists now; or the configured ids). With one account
(the key's own, or one id) there is one `load`, with the pipeline `stripe_pipeline` itself.
`transform` runs once, after every load of the run, with the base pipeline and the dlt schema
of what the accounts' pipelines stored in the destination (fanout.rebuild_current_state).

In the one-task shape the source goes in with `add_run(..., decompose="none")`: one Airflow task
extracts, normalizes and loads the whole source. That is the correct split for this source, not
a default left alone. Its resources share one plan per run: the first request reads Stripe's
clock, the listings of new objects (`coupons`, `products`, `promotion_codes`) and the `events`
resource use that same moment, and on the first run the events cursor starts exactly where the
listings end. dlt's other modes would break that:
- `serialize` / `parallel` put resources in separate tasks, so separate processes and separate
  plans: a listing could end at one moment and the events cursor start at a later one, losing
  every update made in between; with `parallel` the tasks also write the same pipeline state.
- `parallel-isolated` gives each task its own pipeline state: the events cursor would no longer
  belong to the run that listed the objects.
Nor is there anything to gain: the source already overlaps its slow API calls inside the task
(parallelized resources), and an incremental run is a handful of requests. The mapped shape
splits by account, never by resource: each `load` runs the whole source for its account.

The source is built when the task runs (a callable is passed to `add_run`), so each attempt gets
a fresh plan and reads the key and base URL from the worker's environment. The DAG file itself
needs no key to be parsed.

`transform` rebuilds `stripe.coupons`, `stripe.products` and `stripe.promotion_codes` in one
transaction. The helper wipes dlt's local working folder after every task (`wipe_local_data`),
so the transform task first restores the pipeline's schema and state from the destination.

Retries: each task retries 3 times, 5 minutes apart then longer (exponential backoff). A retried
load starts by dropping local state and pending load packages and restoring the state from the
destination, so a failed or killed attempt leaves nothing half-applied: the cursor only moves
with the data it belongs to. A failure retrying cannot fix (a key Stripe refuses, missing
configuration) fails at once, without retries. Either way the task's last line is the
pipeline's own message (what happened, what to do; the key scrubbed). An account that fails in
the one-task shape fails the task once the others are loaded, without retries (a retry would
load them all again; the next run tries it again); in the mapped shape its own `load` fails.
Either way `transform` waits for the next run (or a clear) to run again.
`max_active_runs=1`: two runs never write the same pipelines at once.

Trigger with `{"sync_all": true}` as run config to list every object in full instead (objects
Stripe no longer lists are flagged deleted), e.g. weekly:
`airflow dags trigger stripe_pipeline --conf '{"sync_all": true}'`.

Configuration (the worker's environment, `.dlt/` files in the DAGs folder, which dlt's helper
makes its project folder, or the Airflow Variable `dlt_secrets_toml` holding a secrets.toml;
other Airflow Variables are not read per key unless
PROVIDERS__AIRFLOW_SECRETS__ONLY_TOML_FRAGMENTS=false):
- `STRIPE_API_KEY` (or `SOURCES__STRIPE__API_KEY`): the Stripe key, read when the load task runs.
- `SOURCES__STRIPE__API_BASE`: another Stripe base URL (the emulator, in tests).
- `SOURCES__STRIPE__ACCOUNTS`: Stripe Connect accounts (absent: the key's own; ids; "all").
- `STRIPE_PIPELINE_DESTINATION`: a dlt destination name, default `duckdb`, configured by dlt's
  conventions: `DESTINATION__DUCKDB__CREDENTIALS=/path/stripe.duckdb` (set it: the default file
  lands in the worker's working directory), `DESTINATION__POSTGRES__CREDENTIALS=postgresql://...`.
- `STRIPE_PIPELINE_ACCOUNTS_AT_ONCE`: accounts loaded at once in the mapped shape (default 4).
- `STRIPE_PIPELINE_FAN_OUT=false`: several accounts in one `load` even so (one process, one
  pipeline: cheaper for many small accounts, see orchestration/README.md).
"""

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException
from dlt.common.pipeline import get_dlt_pipelines_dir
from dlt.extract.source import DltSource
from dlt.helpers.airflow_helper import PipelineTasksGroup

from stripe_promotions import (
    RunStats,
    SyncRequest,
    stripe_source,
)
from stripe_promotions_pipeline.accounts import accounts_to_load
from stripe_promotions_pipeline.config import SYNC_ALL, PipelineConfig, make_pipeline
from stripe_promotions_pipeline.errors import RunError, is_permanent
from stripe_promotions_pipeline.fanout import (
    SINGLE_WRITER,
    accounts_at_once,
    failed_accounts_message,
    fans_out,
    load_account,
    rebuild_current_state,
)
from stripe_promotions_pipeline.runner import run_sync
from stripe_promotions_pipeline.tuning import tuned_run

DAG_ID = "stripe_pipeline"
ONLY_TOML_FRAGMENTS = "PROVIDERS__AIRFLOW_SECRETS__ONLY_TOML_FRAGMENTS"
log = logging.getLogger(__name__)
# The one-task shape's run stats (one load per task process): accounts that failed in it.
LOAD_STATS: list[RunStats] = []


def failed(config: PipelineConfig, error: BaseException) -> Exception:
    """What a task raises for a failed step: its message (key scrubbed); no retries when
    retrying cannot fix it."""
    message = config.explain(error)
    if is_permanent(error):
        return AirflowFailException(message)
    return RunError(message)


def explained(run: Callable[[], None]) -> Callable[[], None]:
    """The load task's callable, whose failure ends with one line saying what went wrong.

    When one of the source's parallel resources fails, dlt reports the generators it had to
    close ("generator already executing") and the cause sits deep in the chained traceback;
    the message the command would print goes last here (API key scrubbed). No parameters, so
    Airflow passes it no context.
    """

    def run_explained() -> None:
        LOAD_STATS.clear()
        try:
            with tuned_run():
                run()
        except Exception as error:
            raise failed(PipelineConfig.from_env(), error) from error
        message = failed_accounts_message(LOAD_STATS[0]) if LOAD_STATS else None
        if message:  # several accounts in this task: the others are loaded; the next run
            raise AirflowFailException(message)  # tries again (a retry would reload them all)

    return run_explained


def requested() -> SyncRequest:
    """This run's request: incremental, or sync all (run config `{"sync_all": true}`)."""
    params = get_current_context()["params"]
    return SYNC_ALL if params.get("sync_all") else SyncRequest()


def build_source() -> DltSource:
    """The source for this run, built as the load task starts: incremental, or sync all."""
    stats = RunStats()
    LOAD_STATS.append(stats)
    source: DltSource = stripe_source(request=requested(), stats=stats)
    return source


def list_accounts() -> list[str | None]:
    """The accounts this run loads, one mapped `load` each; `[None]`: the configured account
    (or accounts, with STRIPE_PIPELINE_FAN_OUT=false) in one `load`, with the pipeline
    `stripe_pipeline` itself."""
    config = PipelineConfig.from_env()
    try:
        if not fans_out(config):
            return [None]
        accounts: list[str | None] = list(accounts_to_load(config))
    except Exception as error:
        raise failed(config, error) from error
    log.info("%d Stripe accounts: %s", len(accounts), ", ".join(map(str, accounts)))
    return accounts


def load_one_account(account: str | None) -> dict[str, Any]:
    """One mapped `load`: the account's own pipeline (or the one configured account's run);
    what it loaded goes to XCom and the log."""
    get_current_context()["account"] = account or "the configured account"  # type: ignore[typeddict-unknown-key]  # for map_index_template
    config = PipelineConfig.from_env()
    try:
        if account is None:
            result = run_sync(requested(), replace(config, transform=False))
        else:
            result = load_account(requested(), config, account)
    except Exception as error:
        raise failed(config, error) from error
    message = failed_accounts_message(result.stats)
    if message:  # several accounts in this one task (STRIPE_PIPELINE_FAN_OUT=false), as above
        raise AirflowFailException(message)
    loaded = {
        "objects": sum(result.stats.rows.values()),
        "requests": result.stats.requests,
        "seconds": round(result.seconds, 1),
    }
    log.info("%s: %s", account, ", ".join(f"{n} {what}" for what, n in loaded.items()))
    return loaded


def transform_current_state() -> dict[str, dict[str, int]]:
    """Rebuild the current-state tables from what is loaded; the counts go to XCom and the log."""
    config = PipelineConfig.from_env()
    try:
        # The loads ran in other processes (and maybe on other workers): the schema and state
        # come from the destination.
        changes = rebuild_current_state(config)
    except Exception as error:
        raise RunError(config.explain(error)) from error
    finally:  # nothing of the base pipeline is kept on the worker: the destination has it
        shutil.rmtree(Path(get_dlt_pipelines_dir()) / config.pipeline_name, ignore_errors=True)
    summary = {
        change.table: {
            "rows": change.rows,
            "new": change.new,
            "updated": change.updated,
            "deleted": change.deleted,
        }
        for change in changes
    }
    for table, counts in summary.items():
        log.info("stripe.%s: %s", table, ", ".join(f"{n} {what}" for what, n in counts.items()))
    return summary


default_args: dict[str, Any] = {
    "owner": "data",
    "retries": 3,
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
}

with DAG(
    dag_id=DAG_ID,
    description="Stripe coupons, products and promotion codes: dlt load, then current state",
    schedule="@hourly",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    params={"sync_all": Param(False, type="boolean", description="List every object in full")},
    tags=["stripe", "dlt"],
    doc_md=__doc__,
) as dag:
    # dlt would look up every config key it resolves as an Airflow Variable (hundreds per run,
    # each a call to the API server or the secrets backend); read only the `dlt_secrets_toml`
    # document and its fragments. Set the variable to false for per-key Variables.
    os.environ.setdefault(ONLY_TOML_FRAGMENTS, "true")
    transform = task(task_id="transform")(transform_current_state)
    # The shape follows the destination alone (an environment variable): which accounts, and
    # whether several, is read when a run starts, from the worker's configuration.
    if PipelineConfig.from_env().destination in SINGLE_WRITER:
        # The group first: it points DLT_DATA_DIR at a fresh folder the pipeline must live in
        # (and reloads dlt's config providers, with the setting above).
        load = PipelineTasksGroup("load", use_data_folder=False, wipe_local_data=True)
        pipeline = make_pipeline(PipelineConfig.from_env())
        for load_task in load.add_run(pipeline, build_source, decompose="none"):
            if not isinstance(load_task, PythonOperator):
                raise TypeError(
                    f"dlt's helper made a {type(load_task).__name__}, not a PythonOperator"
                )
            load_task.python_callable = explained(load_task.python_callable)
        load >> transform()
    else:
        accounts = task(task_id="accounts")(list_accounts)()
        loads = task(
            task_id="load",
            max_active_tis_per_dagrun=accounts_at_once(),
            map_index_template="{{ account }}",
        )(load_one_account).expand(account=accounts)
        loads >> transform()
