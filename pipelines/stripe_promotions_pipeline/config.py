"""Where a run reads from and loads to, with the defaults every entry point shares (the
command, the Python verbs, Dagster, Airflow), and the dlt pipeline built from it."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dlt
from dlt.common.destination import Destination

from stripe_promotions import SyncRequest
from stripe_promotions.credentials import check_account
from stripe_promotions.settings import OBJECT_TYPES

from .errors import RunError, explain
from .tuning import prepare_process

PIPELINE_NAME = "stripe_pipeline"
DATASET_NAME = "stripe_raw"
# The orchestrators' destination (the command has --destination).
DESTINATION_ENV = "STRIPE_PIPELINE_DESTINATION"
# Raw table → object type, in build order (promotion_codes reads stripe.coupons).
OBJECT_TABLES = {t.table: t.name for t in OBJECT_TYPES.values()}
# A full listing of the configured types (`sources.stripe.object_types`, default all).
SYNC_ALL = SyncRequest("sync_all")


@dataclass
class PipelineConfig:
    """Where to read from and load to; unset values come from dlt's config and the environment."""

    destination: str = "duckdb"
    api_base: str | None = None
    # Stripe Connect: "all", or connected account ids (None: `sources.stripe.accounts`, or
    # the key's own account).
    accounts: tuple[str, ...] | str | None = None
    pipeline_name: str = PIPELINE_NAME
    dataset_name: str = DATASET_NAME
    pipelines_dir: str | None = None
    duckdb_file: str | None = None
    progress: bool = True
    source_options: dict[str, Any] = field(default_factory=dict)
    # Another folder of transform SQL (default: the installed stripe_promotions_transforms).
    transforms_dir: Path | None = None
    # Seconds to wait for another run of this pipeline (None: STRIPE_PIPELINE_LOCK_WAIT, or 5).
    lock_wait: float | None = None
    # Build the current-state tables after the load (an orchestrator's per-account load does
    # not: one transforms step follows all of them).
    transform: bool = True
    # dlt's staging dataset for merges (None: dlt's `<dataset>_staging`); per-account loads
    # running at once each need their own.
    staging_dataset: str | None = None

    @classmethod
    def from_env(cls, **options: Any) -> PipelineConfig:
        """For an orchestrator: the destination from STRIPE_PIPELINE_DESTINATION (default
        duckdb), no progress display; the rest from dlt's config."""
        config = cls(destination=os.environ.get(DESTINATION_ENV) or "duckdb", progress=False)
        return replace(config, **options)

    def for_account(self, account_id: str) -> PipelineConfig:
        """One account's load in a fan-out (Dagster partition, Airflow mapped task): a dlt
        pipeline of its own (its own state and working folder) with its own staging dataset,
        so loads of different accounts may run at once; no transforms."""
        check_account(account_id)
        return replace(
            self,
            accounts=(account_id,),
            pipeline_name=f"{self.pipeline_name}__{account_id}",
            staging_dataset=staging_dataset(self.dataset_name, account_id),
            transform=False,
            progress=False,
        )

    def single_account(self) -> str | None:
        """The one account a run is limited to, if it is."""
        if isinstance(self.accounts, tuple) and len(self.accounts) == 1:
            return self.accounts[0]
        return None

    def duckdb_path(self) -> str:
        """The DuckDB file this pipeline writes (dlt's default: <pipeline name>.duckdb here)."""
        if self.duckdb_file:
            return self.duckdb_file
        configured = os.environ.get("DESTINATION__DUCKDB__CREDENTIALS")
        return configured or f"{self.pipeline_name}.duckdb"

    def location(self) -> str:
        """Where the data is, in words a user can act on."""
        if self.destination == "duckdb":
            return str(Path(self.duckdb_path()).resolve())
        return f"{self.destination}, schemas {self.dataset_name} and stripe"

    def explain(self, error: BaseException, pipelines_dir: str | None = None) -> str:
        """A failure in words that say what to fix, for this destination."""
        duckdb_file = self.duckdb_path() if self.destination == "duckdb" else None
        return explain(
            error,
            destination=self.destination,
            duckdb_file=duckdb_file,
            pipelines_dir=pipelines_dir,
        )


def staging_dataset(dataset: str, account_id: str) -> str:
    """One account's staging dataset, in the form dlt keeps: dlt lower-cases names, and
    account ids differ by case alone (`acct_1AB`, `acct_1Ab`), so a digest of the id keeps
    them apart."""
    digest = hashlib.sha256(account_id.encode()).hexdigest()[:8]
    return f"{dataset}_staging_{account_id.lower()}_{digest}"


def make_pipeline(config: PipelineConfig) -> dlt.Pipeline:
    """The dlt pipeline `stripe_pipeline` loading into dataset `stripe_raw`, in a process
    prepared the same way whichever entry point builds it (tuning.prepare_process)."""
    prepare_process(duckdb=config.destination == "duckdb")
    if config.destination == "duckdb" and Path(config.duckdb_path()).stem == "stripe":
        raise RunError(
            f"Name the DuckDB file something other than {config.duckdb_path()!r}: DuckDB names "
            "its catalog after the file, and a catalog `stripe` beside the schema `stripe` "
            "makes stripe.coupons ambiguous. The default is stripe_pipeline.duckdb."
        )
    destination: Any = config.destination
    options: dict[str, Any] = {}
    if config.staging_dataset:
        options["staging_dataset_name_layout"] = config.staging_dataset
    if config.destination == "duckdb" and config.duckdb_file:
        destination = dlt.destinations.duckdb(config.duckdb_file, **options)
    elif options:
        destination = Destination.from_reference(config.destination, **options)
    pipeline: dlt.Pipeline = dlt.pipeline(
        pipeline_name=config.pipeline_name,
        destination=destination,
        dataset_name=config.dataset_name,
        pipelines_dir=config.pipelines_dir,  # type: ignore[arg-type]  # None: dlt's default
    )
    return pipeline
