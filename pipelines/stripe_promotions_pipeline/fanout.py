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

import logging
import os
import random
import time
from dataclasses import replace
from typing import Any

import dlt
from dlt.common.destination.exceptions import SchemaUpdateError

from stripe_promotions import RunStats, SyncRequest
from stripe_promotions.accounts import ALL, parse_accounts
from stripe_promotions.credentials import key_mode
from stripe_promotions.settings import OPERATION_RATE_LIMIT, RATE_LIMITS
from stripe_promotions_transforms import TableChanges

from .config import PipelineConfig
from .errors import RunError, root_causes
from .runner import RunResult, run_sync, run_transforms_only
from .tuning import prepare_process

log = logging.getLogger(__name__)

# Destinations that take one writing process at a time: their accounts load in one process.
SINGLE_WRITER = frozenset({"duckdb", "motherduck"})
# "false": several accounts load in one process on any destination (fewer, cheaper steps).
FAN_OUT_ENV = "STRIPE_PIPELINE_FAN_OUT"
# How many accounts a fan-out loads at once (Dagster's executor, Airflow's mapped tasks).
ACCOUNTS_AT_ONCE_ENV = "STRIPE_PIPELINE_ACCOUNTS_AT_ONCE"
DEFAULT_ACCOUNTS_AT_ONCE = 4
# Loads of one account tried when another account's pipeline changed the tables meanwhile.
SCHEMA_RACE_ATTEMPTS = 4
VERSION_TABLE = "_dlt_version"
SCHEMA_NAME = "stripe"  # the dlt source's name, so its schema's


def fans_out(config: PipelineConfig) -> bool:
    """Whether an orchestrator loads accounts one per step: several accounts are selected
    (a list, or "all"), the destination takes several writers at once, and
    STRIPE_PIPELINE_FAN_OUT is not "false"."""
    if config.destination in SINGLE_WRITER:
        return False
    if os.environ.get(FAN_OUT_ENV, "").strip().lower() in ("false", "0", "no"):
        return False
    # Before dlt's config is first read: outside Airflow, dlt's probe for Airflow's secrets
    # costs every process 2-3 s (each Dagster step loads the definitions), and importing
    # Airflow replaces the root logger's handlers.
    prepare_process(duckdb=False)
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
    """One account's load in a fan-out: `run_sync` with the account's own pipeline and its
    share of the platform's rate limits, tried again when it lost a race with another
    account's pipeline over the raw tables' DDL."""
    prepare_process(duckdb=base.destination == "duckdb")  # before dlt's config is first read
    options = {**rate_share(base), **base.source_options}
    config = replace(base, source_options=options).for_account(account)
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


def rate_share(base: PipelineConfig) -> dict[str, float]:
    """Rate limits for one of STRIPE_PIPELINE_ACCOUNTS_AT_ONCE account loads in processes of
    their own: each process's client would take the platform's whole budget (Stripe's limits
    for the key), and together they would be answered 429 and slowed by backoff. Limits set
    in the configuration win; with `connect_rate_budget = "per_account"` none are divided."""
    at_once = accounts_at_once()
    budget = base.source_options.get("connect_rate_budget") or dlt.config.get(
        "sources.stripe.connect_rate_budget"
    )
    if at_once == 1 or (budget or "platform") != "platform":
        return {}
    share: dict[str, float] = {}
    if dlt.config.get("sources.stripe.max_requests_per_second") is None:
        key: Any = dlt.secrets.get("sources.stripe.api_key") or os.environ.get("STRIPE_API_KEY")
        share["max_requests_per_second"] = RATE_LIMITS[key_mode(str(key or ""))] / at_once
    if dlt.config.get("sources.stripe.max_requests_per_second_per_operation") is None:
        share["max_requests_per_second_per_operation"] = OPERATION_RATE_LIMIT / at_once
    return share


def lost_schema_race(error: BaseException) -> bool:
    """Whether dlt failed to apply the raw tables' DDL: what a concurrent pipeline's DDL causes
    (dlt says a retry is safe); a genuine refusal fails the same way on every attempt."""
    return any(isinstance(cause, SchemaUpdateError) for cause in root_causes(error))


def rebuild_current_state(base: PipelineConfig) -> list[TableChanges]:
    """The transforms after the loads, with the base pipeline and the dlt schema of what every
    account's pipeline loaded (`run_transforms_only` adopts it)."""
    prepare_process(duckdb=base.destination == "duckdb")  # before dlt's config is read
    return run_transforms_only(base)


def failed_accounts_message(stats: RunStats) -> str | None:
    """For a run of several accounts in one process: which failed and why, or None."""
    if not stats.failed_accounts:
        return None
    reasons = "; ".join(f"{a}: {why}" for a, why in sorted(stats.failed_accounts.items()))
    return (
        f"{len(stats.failed_accounts)} of {len(stats.accounts)} Stripe accounts failed; the "
        f"others loaded, and each resumes where it stopped on the next run. {reasons}"
    )
