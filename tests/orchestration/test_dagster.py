"""The Dagster definitions against the emulator: every asset materializes, changes flow through.

The jobs run in-process (`execute_in_process` on an ephemeral instance) into a temporary DuckDB
file; the configuration comes from the environment, as in a deployment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import stripe

from orchestration.dagster.definitions import build_definitions
from stripe_emulator.server import EmulatorServer
from stripe_promotions_pipeline import PipelineConfig
from tests.orchestration.checks import assert_matches_stripe
from tests.support import TEST_KEY, Warehouse, as_json

REPO = Path(__file__).resolve().parents[2]
RAW = {f"stripe_raw/{name}" for name in ("coupons", "products", "promotion_codes")} | {
    "stripe_raw/events",
    "stripe_raw/full_listing",
    "stripe_raw/raw_tables",
}
SYNC_ALL = {"stripe_raw/sync_all/full_listing", "stripe_raw/sync_all/raw_tables"}
CURRENT = {"stripe/coupons", "stripe/products", "stripe/promotion_codes"}


@pytest.fixture
def deployment(
    isolated: Path, stripe_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> Warehouse:
    """The environment a deployment would set: emulator URL, DuckDB file; reads of that file."""
    duckdb_file = isolated / "warehouse.duckdb"
    monkeypatch.setenv("SOURCES__STRIPE__API_BASE", stripe_emulator.url)
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(duckdb_file))
    monkeypatch.delenv("STRIPE_PIPELINE_DESTINATION", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(isolated / "dagster_home"))
    (isolated / "dagster_home").mkdir()
    # Reads go through a pipeline of their own, not the one the definitions run.
    return Warehouse(
        "duckdb",
        PipelineConfig(
            duckdb_file=str(duckdb_file), pipelines_dir=str(isolated / "reader"), progress=False
        ),
    )


def run_job(defs: dg.Definitions, name: str, instance: dg.DagsterInstance) -> dict[str, Any]:
    """Run a job in-process; the metadata of each asset it materialized, by asset key."""
    result = defs.resolve_job_def(name).execute_in_process(instance=instance)
    assert result.success
    materialized: dict[str, Any] = {}
    for event in result.get_asset_materialization_events():
        assert event.asset_key is not None
        key = event.asset_key.to_user_string()
        assert key not in materialized, f"{key} materialized twice"
        metadata = event.materialization.metadata
        materialized[key] = {name: value.value for name, value in metadata.items()}
    return materialized


def test_incremental_job_materializes_every_asset_and_picks_up_changes(
    deployment: Warehouse, stripe_emulator: EmulatorServer, client: stripe.StripeClient
) -> None:
    stripe_emulator.account.seed(preset="demo")
    defs = build_definitions()
    instance = dg.DagsterInstance.ephemeral()

    first = run_job(defs, "stripe_incremental", instance)
    assert set(first) == RAW | CURRENT
    coupons = deployment.current("coupons")
    assert first["stripe/coupons"]["dagster/row_count"] == len(coupons) == 24
    assert first["stripe/coupons"]["new"] == len(coupons)
    assert first["stripe_raw/coupons"]["rows_loaded"] == 24
    assert_matches_stripe(deployment, stripe_emulator)

    live_coupons = sorted(stripe_emulator.account.state("coupon"))
    updated, deleted = live_coupons[0], live_coupons[1]
    code = next(
        c["id"]
        for c in stripe_emulator.account.state("promotion_code").values()
        if c["active"] and c["promotion"]["coupon"] not in (updated, deleted)
    )
    client.v1.coupons.update(updated, params={"metadata": {"campaign": "orchestrated"}})
    client.v1.coupons.delete(deleted)
    product = client.v1.products.create(params={"name": "Scheduled by Dagster"})
    client.v1.promotion_codes.update(code, params={"active": False})

    second = run_job(defs, "stripe_incremental", instance)
    assert set(second) == RAW | CURRENT
    coupons = deployment.current("coupons")
    metadata = as_json(coupons[updated]["metadata"])
    assert metadata["campaign"] == "orchestrated"
    assert metadata == stripe_emulator.account.state("coupon")[updated]["metadata"]
    assert coupons[deleted]["is_deleted"] is True and coupons[deleted]["deleted_at"] is not None
    products = deployment.current("products")
    assert products[product.id]["name"] == "Scheduled by Dagster"
    assert products[product.id]["is_deleted"] is False
    assert deployment.current("promotion_codes")[code]["active"] is False
    assert second["stripe/coupons"]["updated"] == 1
    assert second["stripe/coupons"]["newly_deleted"] == 1
    assert second["stripe/products"]["new"] == 1
    assert second["stripe/promotion_codes"]["updated"] >= 1
    assert_matches_stripe(deployment, stripe_emulator)


def test_weekly_sync_all_job_flags_deletions_the_events_missed(
    deployment: Warehouse, stripe_emulator: EmulatorServer, client: stripe.StripeClient
) -> None:
    stripe_emulator.account.seed(preset="demo")
    defs = build_definitions()
    instance = dg.DagsterInstance.ephemeral()
    run_job(defs, "stripe_incremental", instance)

    stripe_emulator.account.set_event_delay(10**9)  # the deletion's event never shows up
    gone = sorted(stripe_emulator.account.state("product"))[0]
    client.v1.products.delete(gone)
    run_job(defs, "stripe_incremental", instance)
    assert deployment.current("products")[gone]["is_deleted"] is False

    materialized = run_job(defs, "stripe_sync_all", instance)
    assert set(materialized) == SYNC_ALL | CURRENT
    assert deployment.current("products")[gone]["is_deleted"] is True
    assert materialized["stripe/products"]["newly_deleted"] == 1
    listed = deployment.rows(
        "SELECT object_type, objects FROM stripe_raw.full_listings ORDER BY object_type"
    )
    account = stripe_emulator.account
    assert [(row["object_type"], row["objects"]) for row in listed] == [
        (kind, len(account.state(kind))) for kind in ("coupon", "product", "promotion_code")
    ]
    assert_matches_stripe(deployment, stripe_emulator)


def test_a_refused_key_fails_at_once_says_why_and_never_shows_the_key(
    deployment: Warehouse, stripe_emulator: EmulatorServer
) -> None:
    stripe_emulator.account.keys.set_access(TEST_KEY, "revoked")
    defs = build_definitions()
    result = defs.resolve_job_def("stripe_incremental").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert not result.success
    assert not [e for e in result.all_events if e.is_step_up_for_retry]  # retrying cannot help
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "stripe_incremental_load"
    error = failure.step_failure_data.error
    assert error is not None and error.message.startswith(
        "dagster._core.definitions.events.Failure"
    )
    assert "key" in error.message.lower() and "generator already executing" not in error.message
    logged = "\n".join(str(event) for event in result.all_events)
    assert TEST_KEY not in logged and TEST_KEY not in str(error.to_string())


def test_definitions_load_without_a_key(
    deployment: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRIPE_API_KEY")
    defs = build_definitions()

    hourly = defs.resolve_schedule_def("stripe_hourly_incremental")
    weekly = defs.resolve_schedule_def("stripe_weekly_sync_all")
    assert hourly.cron_schedule == "0 * * * *" and hourly.job_name == "stripe_incremental"
    assert weekly.job_name == "stripe_sync_all"
    assert str(weekly.cron_schedule).split()[2:] == ["*", "*", "0"]  # weekly, on Sundays

    graph = defs.resolve_asset_graph()
    for key in CURRENT:
        upstream = {
            k.to_user_string() for k in graph.get(dg.AssetKey.from_user_string(key)).parent_keys
        }
        assert upstream == RAW | SYNC_ALL
    incremental = {
        k.to_user_string()
        for k in defs.resolve_job_def("stripe_incremental").asset_layer.selected_asset_keys
    }
    assert incremental == RAW | CURRENT
    for name in ("stripe_incremental", "stripe_sync_all"):
        policy = defs.resolve_job_def(name).op_retry_policy
        assert policy is not None and policy.max_retries == 3 and policy.delay == 300


def test_a_subset_of_the_raw_assets_is_refused(deployment: Warehouse) -> None:
    defs = build_definitions()
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        asset_selection=[dg.AssetKey(["stripe_raw", "coupons"])],
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message if failure.step_failure_data.error else ""
    assert "together" in message and "stripe_raw/coupons" in message


def graphql(port: int, query: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        body: dict[str, Any] = json.load(response)
        return body


WORKSPACE = """{ workspaceOrError { ... on Workspace { locationEntries { loadStatus
  locationOrLoadError { __typename ... on PythonError { message }
    ... on RepositoryLocation { repositories { jobs { name } schedules { name } } } } } } } }"""


def test_dagster_dev_loads_the_definitions(tmp_path: Path) -> None:
    """The README's command, from the repository root, with a DAGSTER_HOME of its own."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DLT_DATA_DIR": str(tmp_path / "dlt"),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
    }
    env.pop("STRIPE_API_KEY", None)
    dagster = Path(sys.executable).parent / "dagster"
    command = [str(dagster), "dev", "-m", "orchestration.dagster.definitions"]
    process = subprocess.Popen(
        [*command, "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        location = wait_for_location(process, port, deadline=time.monotonic() + 90)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            output = process.communicate(timeout=30)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output = process.communicate()[0].decode(errors="replace")
    assert location.get("__typename") == "RepositoryLocation", output[-3000:]
    (repository,) = location["repositories"]
    assert {j["name"] for j in repository["jobs"]} >= {"stripe_incremental", "stripe_sync_all"}
    assert {s["name"] for s in repository["schedules"]} == {
        "stripe_hourly_incremental",
        "stripe_weekly_sync_all",
    }


def wait_for_location(
    process: subprocess.Popen[bytes], port: int, deadline: float
) -> dict[str, Any]:
    """Poll the webserver until the code location has loaded (or failed to)."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return {"__typename": f"dagster dev exited with {process.returncode}"}
        try:
            entries = graphql(port, WORKSPACE)["data"]["workspaceOrError"]["locationEntries"]
        except (OSError, urllib.error.URLError, KeyError, TypeError):
            entries = []
        if entries and entries[0]["loadStatus"] == "LOADED":
            location: dict[str, Any] = entries[0]["locationOrLoadError"]
            return location
        time.sleep(0.5)
    return {"__typename": "timed out waiting for the code location"}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
