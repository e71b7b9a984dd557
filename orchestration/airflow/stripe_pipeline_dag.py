"""Airflow DAG `stripe_pipeline`: the Stripe source through dlt's Airflow helper, then transforms.

    load.stripe_pipeline  ->  transform        hourly, at most one run at a time, with retries

`load` is dlt's `PipelineTasksGroup`; the source goes in with `add_run(..., decompose="none")`:
one Airflow task extracts, normalizes and loads the whole source. That is the correct split for
this source, not a default left alone. Its resources share one plan per run: the first request
reads Stripe's clock, the listings of new objects (`coupons`, `products`, `promotion_codes`)
and the `events` resource use that same moment, and on the first run the events cursor starts
exactly where the listings end. dlt's other modes would break that:
- `serialize` / `parallel` put resources in separate tasks, so separate processes and separate
  plans: a listing could end at one moment and the events cursor start at a later one, losing
  every update made in between; with `parallel` the tasks also write the same pipeline state.
- `parallel-isolated` gives each task its own pipeline state: the events cursor would no longer
  belong to the run that listed the objects.
Nor is there anything to gain: the source already overlaps its slow API calls inside the task
(parallelized resources), and an incremental run is a handful of requests.

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
pipeline's own message (what happened, what to do; the key scrubbed).
`max_active_runs=1`: two runs never write the pipeline at once.

Trigger with `{"sync_all": true}` as run config to list every object in full instead (objects
Stripe no longer lists are flagged deleted), e.g. weekly:
`airflow dags trigger stripe_pipeline --conf '{"sync_all": true}'`.

Configuration (the worker's environment, `.dlt/` files in the DAGs folder, which dlt's helper
makes its project folder, or the Airflow Variable `dlt_secrets_toml` holding a secrets.toml;
other Airflow Variables are not read per key unless
PROVIDERS__AIRFLOW_SECRETS__ONLY_TOML_FRAGMENTS=false):
- `STRIPE_API_KEY` (or `SOURCES__STRIPE__API_KEY`): the Stripe key, read when the load task runs.
- `SOURCES__STRIPE__API_BASE`: another Stripe base URL (the emulator, in tests).
- `STRIPE_PIPELINE_DESTINATION`: a dlt destination name, default `duckdb`, configured by dlt's
  conventions: `DESTINATION__DUCKDB__CREDENTIALS=/path/stripe.duckdb` (set it: the default file
  lands in the worker's working directory), `DESTINATION__POSTGRES__CREDENTIALS=postgresql://...`.
"""

import logging
import os
import shutil
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException
from dlt.extract.source import DltSource
from dlt.helpers.airflow_helper import PipelineTasksGroup

from stripe_promotions import (
    stripe_source,
)
from stripe_promotions_pipeline.config import SYNC_ALL, PipelineConfig, make_pipeline
from stripe_promotions_pipeline.errors import RunError, is_permanent
from stripe_promotions_pipeline.runner import build_current_state
from stripe_promotions_pipeline.tuning import tuned_run

DAG_ID = "stripe_pipeline"
ONLY_TOML_FRAGMENTS = "PROVIDERS__AIRFLOW_SECRETS__ONLY_TOML_FRAGMENTS"
log = logging.getLogger(__name__)


def explained(run: Callable[[], None]) -> Callable[[], None]:
    """The load task's callable, whose failure ends with one line saying what went wrong.

    When one of the source's parallel resources fails, dlt reports the generators it had to
    close ("generator already executing") and the cause sits deep in the chained traceback;
    the message the command would print goes last here (API key scrubbed). No parameters, so
    Airflow passes it no context.
    """

    def run_explained() -> None:
        try:
            with tuned_run():
                run()
        except Exception as error:
            message = PipelineConfig.from_env().explain(error)
            if is_permanent(error):  # retrying cannot fix it: fail without the retries
                raise AirflowFailException(message) from error
            raise RunError(message) from error

    return run_explained


def build_source() -> DltSource:
    """The source for this run, built as the load task starts: incremental, or sync all."""
    params = get_current_context()["params"]
    source: DltSource = stripe_source(request=SYNC_ALL if params.get("sync_all") else None)
    return source


def transform_current_state() -> dict[str, dict[str, int]]:
    """Rebuild the current-state tables from what is loaded; the counts go to XCom and the log."""
    config = PipelineConfig.from_env()
    pipeline = make_pipeline(config)
    try:
        # The load task's working folder is gone (and may have been on another worker):
        # take the schema and state from the destination.
        pipeline.sync_destination()
        changes = build_current_state(pipeline, config)
    except Exception as error:
        raise RunError(config.explain(error)) from error
    finally:
        shutil.rmtree(pipeline.working_dir, ignore_errors=True)
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
    # The group first: it points DLT_DATA_DIR at a fresh folder the pipeline must live in (and
    # reloads dlt's config providers, with the setting above).
    load = PipelineTasksGroup("load", use_data_folder=False, wipe_local_data=True)
    pipeline = make_pipeline(PipelineConfig.from_env())
    for load_task in load.add_run(pipeline, build_source, decompose="none"):
        if not isinstance(load_task, PythonOperator):
            raise TypeError(f"dlt's helper made a {type(load_task).__name__}, not a PythonOperator")
        load_task.python_callable = explained(load_task.python_callable)

    transform = task(task_id="transform")(transform_current_state)
    load >> transform()
