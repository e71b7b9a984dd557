"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import stripe

from stripe_promotions_pipeline import (
    PipelineConfig,
    RunResult,
    SyncRequest,
    make_pipeline,
    run_sync,
)

TEST_KEY = "sk_test_emulatorKey0123456789"
ROOT = Path(__file__).resolve().parents[1]
COMMAND = [sys.executable, str(ROOT / "pipelines" / "stripe_pipeline.py")]


def run_command(
    *args: str, cwd: Path, env: dict[str, str] | None = None, key: str | None = TEST_KEY
) -> subprocess.CompletedProcess[str]:
    """The command in a folder of its own, as a user runs it: its DuckDB file and dlt's data
    there, none of this machine's Stripe or destination settings, the test key unless told."""
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))
    }
    for name in ("STRIPE_API_KEY", "STRIPE_PIPELINE_LOCK_WAIT"):
        environment.pop(name, None)
    environment.update(DLT_DATA_DIR=str(cwd / "dlt"), RUNTIME__DLTHUB_TELEMETRY="false")
    if key is not None:
        environment["STRIPE_API_KEY"] = key
    environment.update(env or {})
    return subprocess.run(
        [*COMMAND, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=180
    )


class PatientHttpClient(stripe.RequestsClient):
    """The SDK's own HTTP client that also retries a 429: a test's setup is one more client
    of the account, and waits its turn under Stripe's rate limits like any other."""

    def _should_retry(
        self,
        response: Any,
        api_connection_error: Any,
        num_retries: int,
        max_network_retries: int | None,
    ) -> bool:
        if response is not None and response[1] == 429:
            return num_retries < (max_network_retries or 0)
        return bool(
            super()._should_retry(response, api_connection_error, num_retries, max_network_retries)
        )


def setup_client(api_base: str, version: str | None = None) -> stripe.StripeClient:
    """The official SDK for a test's own changes to the emulated account, over HTTP."""
    return stripe.StripeClient(
        TEST_KEY,
        base_addresses={"api": api_base},
        stripe_version=version,
        http_client=PatientHttpClient(),
        max_network_retries=30,
    )


def as_json(value: Any) -> Any:
    """A JSON column's value: DuckDB hands back text, PostgreSQL a parsed value."""
    return json.loads(value) if isinstance(value, str) else value


@dataclass
class Warehouse:
    """Where a test loads: the settings for runs, and reads of the resulting tables."""

    name: str
    settings: PipelineConfig

    def run(self, request: SyncRequest | None = None, **changes: Any) -> RunResult:
        """One pipeline run (and the transforms) with these settings."""
        return run_sync(request or SyncRequest(), replace(self.settings, **changes))

    def rows(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a query against the destination, as dicts."""
        client = make_pipeline(self.settings).sql_client()
        with client, client.execute_query(sql) as cursor:
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def current(self, table: str) -> dict[str, dict[str, Any]]:
        """A current-state table by id."""
        return {row["id"]: row for row in self.rows(f"SELECT * FROM stripe.{table}")}
