"""Stripe Connect fanned out by an orchestrator: one account per Dagster step or Airflow mapped
task, each with its own dlt pipeline (`PipelineConfig.for_account`), then one transforms step.
Both engines call these functions, so they behave the same.

Measured on PostgreSQL (orchestration/README.md, "Stripe Connect"):
- Per-account pipelines loading into one dataset at the same moment race on dlt's schema
  migration: each reads information_schema, misses the tables another one has not committed
  yet, and its CREATE TABLE then fails (a UniqueViolation, which dlt wraps as
  SchemaUpdateTerminalError although it says a retry is safe). `load_account` retries such a
  load: the retry sees the committed tables and adds only what is missing. A race costs the
  losing account its first extraction once (the retry starts from what the destination holds).
- The transforms run with the base pipeline `stripe_pipeline`, which never loads in a fan-out,
  so it has no dlt schema of the raw tables. `rebuild_current_state` takes it from the
  destination: the union of the schema versions the accounts' pipelines stored there (one
  account's data may add a column another's never saw).
- DuckDB (and MotherDuck) take one writer at a time: no fan-out there; all accounts load in
  one process (`fans_out` is False), and the source overlaps them itself.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from typing import Any

import dlt
from dlt.common.destination.client import WithStateSync
from dlt.common.destination.exceptions import DestinationUndefinedEntity, SchemaUpdateError
from dlt.common.schema import Schema
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from stripe_promotions import RunStats, SyncRequest
from stripe_promotions.accounts import ALL, parse_accounts
from stripe_promotions_transforms import TableChanges

from .config import PipelineConfig
from .destination_state import reconcile
from .errors import RunError, root_causes
from .progress import Progress
from .runner import RunResult, build_current_state, failure, one_run_at_a_time, run_sync

log = logging.getLogger(__name__)

# Destinations that take one writing process at a time: their accounts load in one process.
SINGLE_WRITER = frozenset({"duckdb", "motherduck"})
# How many accounts a fan-out loads at once (Dagster's executor, Airflow's mapped tasks).
ACCOUNTS_AT_ONCE_ENV = "STRIPE_PIPELINE_ACCOUNTS_AT_ONCE"
DEFAULT_ACCOUNTS_AT_ONCE = 4
# Loads of one account tried when another account's pipeline changed the tables meanwhile.
SCHEMA_RACE_ATTEMPTS = 4
VERSION_TABLE = "_dlt_version"
SCHEMA_NAME = "stripe"  # the dlt source's name, so its schema's


def fans_out(config: PipelineConfig) -> bool:
    """Whether an orchestrator loads accounts one per step: several accounts are selected
    (a list, or "all") and the destination takes several writers at once."""
    if config.destination in SINGLE_WRITER:
        return False
    configured: Any = config.accounts
    if configured is None:
        configured = dlt.config.get("sources.stripe.accounts")
    selection = parse_accounts(configured)
    return selection == ALL or (isinstance(selection, tuple) and len(selection) > 1)


def accounts_at_once() -> int:
    """STRIPE_PIPELINE_ACCOUNTS_AT_ONCE (default 4): accounts a fan-out loads at the same time."""
    configured = os.environ.get(ACCOUNTS_AT_ONCE_ENV, "").strip()
    if not configured:
        return DEFAULT_ACCOUNTS_AT_ONCE
    if not configured.isdigit() or int(configured) < 1:
        raise RunError(
            f"{ACCOUNTS_AT_ONCE_ENV}={configured!r} is not a number of accounts: use e.g. 4 "
            "(the default) or 8."
        )
    return int(configured)


def load_account(request: SyncRequest, base: PipelineConfig, account: str) -> RunResult:
    """One account's load in a fan-out: `run_sync` with the account's own pipeline, tried
    again when it lost a race with another account's pipeline over the raw tables' DDL."""
    config = base.for_account(account)
    logging.getLogger("dlt").addFilter(STAGING_NAME_NOTICE)
    for attempt in range(1, SCHEMA_RACE_ATTEMPTS + 1):
        try:
            return run_sync(request, config)
        except RunError as error:
            if attempt == SCHEMA_RACE_ATTEMPTS or not lost_schema_race(error):
                raise
            log.warning(
                "%s: another account's load changed the raw tables at the same moment "
                "(attempt %d of %d); loading again.",
                account,
                attempt,
                SCHEMA_RACE_ATTEMPTS,
            )
            time.sleep(random.uniform(0.2, 1.0) * attempt)  # apart from the other losers
    raise AssertionError("unreachable")  # the loop returns or raises


def lost_schema_race(error: BaseException) -> bool:
    """Whether dlt failed to apply the raw tables' DDL: what a concurrent pipeline's DDL causes
    (dlt says a retry is safe); a genuine refusal fails the same way on every attempt."""
    return any(isinstance(cause, SchemaUpdateError) for cause in root_causes(error))


def rebuild_current_state(base: PipelineConfig) -> list[TableChanges]:
    """The transforms after the loads, with the base pipeline and the dlt schema of what every
    account's pipeline loaded (`run_transforms_only`, plus `adopt_loaded_schema`)."""
    progress = Progress(RunStats(), enabled=False)
    pipeline: dlt.Pipeline | None = None
    try:
        with one_run_at_a_time(base, progress) as pipeline, progress.step("transforming"):
            reconcile(pipeline)
            adopt_loaded_schema(pipeline)
            return build_current_state(pipeline, base)
    except (Exception, KeyboardInterrupt) as error:
        raise failure(error, pipeline, base, progress.phase) from error


def adopt_loaded_schema(pipeline: dlt.Pipeline) -> None:
    """Give the pipeline the dlt schema of the raw tables as loaded: the newest version stored
    in the dataset, with every column an older or another pipeline's version has besides."""
    name = pipeline.default_schema_name or SCHEMA_NAME
    stored = stored_schemas(pipeline, name)
    if not stored:
        return  # nothing loaded yet: the transforms say so
    merged, *others = stored
    for other in others:
        for table_name, table in other.tables.items():
            known = merged.tables.get(table_name)
            if known is None:
                continue  # a table the newest version dropped stays dropped
            missing = {c: col for c, col in table["columns"].items() if c not in known["columns"]}
            if missing:
                merged.update_table(
                    {"name": table_name, "columns": missing}, normalize_identifiers=False
                )
    pipeline.schemas.save_schema(merged)
    if pipeline.default_schema_name is None:
        pipeline.default_schema_name = merged.name  # type: ignore[assignment]  # dlt: None


def stored_schemas(pipeline: dlt.Pipeline, name: str) -> list[Schema]:
    """Every distinct version of schema `name` stored in the pipeline's dataset, newest first."""
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(VERSION_TABLE)
            rows = client.execute_sql(
                f"SELECT version_hash FROM {table} WHERE schema_name = %s "
                "GROUP BY version_hash ORDER BY MAX(inserted_at) DESC",
                name,
            )
    except (DatabaseUndefinedRelation, DestinationUndefinedEntity):
        return []
    schemas: list[Schema] = []
    with pipeline.destination_client() as job_client:
        if not isinstance(job_client, WithStateSync):
            return []
        for (version_hash,) in rows or []:
            info = job_client.get_stored_schema_by_hash(str(version_hash))
            if info is not None:
                schemas.append(Schema.from_dict(json.loads(info.schema)))
    return schemas


def failed_accounts_message(stats: RunStats) -> str | None:
    """For a run of several accounts in one process: which failed and why, or None."""
    if not stats.failed_accounts:
        return None
    reasons = "; ".join(f"{a}: {why}" for a, why in sorted(stats.failed_accounts.items()))
    return (
        f"{len(stats.failed_accounts)} of {len(stats.accounts)} Stripe accounts failed; the "
        f"others loaded, and each resumes where it stopped on the next run. {reasons}"
    )


class _StagingNameNotice(logging.Filter):
    """dlt's warning, once per statement, that it normalized an account's staging dataset name
    (`stripe_raw_staging__acct_1AbC` becomes `stripe_raw_staging_acct_1ab_c`): noise while
    config.py names staging datasets in a form dlt does not change."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Due to normalization dataset name got changed" not in record.getMessage()


STAGING_NAME_NOTICE = _StagingNameNotice()
