"""The Dagster fan-out (Stripe Connect) against the emulator and a real PostgreSQL.

Accounts are partitions (the sensor adds and removes them); the hourly schedule's run covers
every partition in one run, one step per account in a process of its own (multiprocess
executor). The runs go through `dagster job execute`, as a user would start one, in a
DAGSTER_HOME of their own; the test reads the runs back from that instance.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg2
import pytest
import stripe

from orchestration.dagster.definitions import ACCOUNT_PARTITIONS, build_definitions
from stripe_emulator.server import EmulatorServer
from stripe_promotions_pipeline import PipelineConfig
from tests.conftest import create_database
from tests.orchestration.checks import (
    SHARED_COUPON,
    assert_every_account_matches,
    connect_platform,
)
from tests.support import TEST_KEY, Warehouse, as_json

REPO = Path(__file__).resolve().parents[2]
DAGSTER = str(Path(sys.executable).parent / "dagster")
RAW = dg.AssetKey(["stripe_raw", "accounts"])
LOAD_STEP = re.compile(r"\.incremental_account\[(acct_\w+)\]$")  # a mapped step's key


@pytest.fixture
def connect(
    isolated: Path,
    stripe_emulator: EmulatorServer,
    postgres_socket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Warehouse, dg.DagsterInstance]]:
    """A Connect deployment into PostgreSQL: every account, a DAGSTER_HOME; its instance."""
    home = isolated / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("SOURCES__STRIPE__API_BASE", stripe_emulator.url)
    monkeypatch.setenv("SOURCES__STRIPE__ACCOUNTS", "all")
    monkeypatch.setenv("STRIPE_PIPELINE_DESTINATION", "postgres")
    monkeypatch.setenv("STRIPE_PIPELINE_ACCOUNTS_AT_ONCE", "3")
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", create_database(postgres_socket))
    reader = PipelineConfig(
        destination="postgres", pipelines_dir=str(isolated / "reader"), progress=False
    )
    with dg.DagsterInstance.get() as instance:
        yield Warehouse("postgres", reader), instance


def register_accounts(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.SensorResult:
    """One tick of the accounts sensor, its partition requests applied as the daemon would."""
    sensor = defs.resolve_sensor_def("stripe_accounts_sensor")
    result = sensor(dg.build_sensor_context(instance=instance))
    assert isinstance(result, dg.SensorResult)
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(ACCOUNT_PARTITIONS, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(ACCOUNT_PARTITIONS, key)
    return result


def scheduled_tags(defs: dg.Definitions, instance: dg.DagsterInstance) -> dict[str, str]:
    """The run tags the hourly schedule asks for: every account partition, as one range."""
    schedule = defs.resolve_schedule_def("stripe_hourly_incremental")
    request = schedule.evaluate_tick(dg.build_schedule_context(instance=instance))
    (run,) = request.run_requests or []
    return dict(run.tags)


def dagster_job(job: str, tags: dict[str, str]) -> dg.DagsterRun:
    """`dagster job execute` in a process of its own; the run it made."""
    command = [DAGSTER, "job", "execute", "-m", "orchestration.dagster.definitions", "-j", job]
    done = subprocess.run(
        [*command, "--tags", json.dumps(tags)],
        cwd=REPO,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert TEST_KEY not in output
    assert done.returncode == 0, output[-4000:]
    with dg.DagsterInstance.get() as instance:
        (run, *_) = instance.get_runs(limit=1)
    assert run.status == dg.DagsterRunStatus.SUCCESS, output[-4000:]
    return run


def load_steps(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dict[str, dict[str, Any]]:
    """Each account's load step in the run: its process and when it started and ended."""
    steps: dict[str, dict[str, Any]] = {}
    for entry in instance.all_logs(run.run_id):
        event = entry.dagster_event
        account = LOAD_STEP.search(event.step_key or "") if event is not None else None
        if event is None or account is None:
            continue
        step = steps.setdefault(account.group(1), {})
        if event.event_type_value == "STEP_START":
            step.update(pid=event.pid, start=entry.timestamp)
        elif event.event_type_value == "STEP_SUCCESS":
            step["end"] = entry.timestamp
    return steps


def most_at_once(steps: Iterable[dict[str, Any]]) -> int:
    """The most steps that ran at the same moment."""
    edges = sorted(e for step in steps for e in ((step["start"], 1), (step["end"], -1)))
    return max(itertools.accumulate(change for _, change in edges))


def test_a_backfill_of_every_account_runs_in_parallel_processes_into_postgres(
    connect: tuple[Warehouse, dg.DagsterInstance],
    stripe_emulator: EmulatorServer,
    client: stripe.StripeClient,
) -> None:
    warehouse, instance = connect
    accounts = connect_platform(stripe_emulator, client, connected=5)
    defs = build_definitions()
    register_accounts(defs, instance)
    assert sorted(instance.get_dynamic_partitions(ACCOUNT_PARTITIONS)) == sorted(accounts)
    tags = scheduled_tags(defs, instance)

    first = dagster_job("stripe_incremental", tags)
    steps = load_steps(instance, first)
    assert sorted(steps) == sorted(accounts)
    pids = {step["pid"] for step in steps.values()}
    assert len(pids) == len(accounts) and os.getpid() not in pids  # a process per account
    assert 2 <= most_at_once(steps.values()) <= 3  # in parallel, at most ACCOUNTS_AT_ONCE
    assert instance.get_materialized_partitions(RAW) == set(accounts)
    records = "\n".join(str(entry) for entry in instance.all_logs(first.run_id))
    assert TEST_KEY not in records and TEST_KEY not in str(first)
    assert_every_account_matches(warehouse, stripe_emulator, accounts)
    shared = warehouse.rows(f"SELECT account_id FROM stripe.coupons WHERE id = '{SHARED_COUPON}'")
    assert sorted(row["account_id"] for row in shared) == sorted(accounts[1:3])

    # Changes in two accounts: the same coupon id updated in one, deleted in the other; a new
    # product. The next run picks them up through each account's own events.
    updated_in, deleted_in = accounts[1], accounts[2]
    client.v1.coupons.update(
        SHARED_COUPON,
        params={"metadata": {"campaign": "fan-out"}},
        options={"stripe_account": updated_in},
    )
    client.v1.coupons.delete(SHARED_COUPON, options={"stripe_account": deleted_in})
    created = client.v1.products.create(
        params={"name": "Loaded by a partition"}, options={"stripe_account": deleted_in}
    )

    dagster_job("stripe_incremental", scheduled_tags(defs, instance))
    coupons = warehouse.rows(
        f"SELECT account_id, metadata, is_deleted FROM stripe.coupons WHERE id = '{SHARED_COUPON}'"
    )
    assert {
        row["account_id"]: (as_json(row["metadata"]).get("campaign"), row["is_deleted"])
        for row in coupons
    } == {updated_in: ("fan-out", False), deleted_in: (None, True)}
    products = warehouse.current("products")
    assert products[created.id]["account_id"] == deleted_in
    assert_every_account_matches(warehouse, stripe_emulator, accounts)


def test_the_sensor_adds_new_accounts_and_removes_disconnected_ones(
    connect: tuple[Warehouse, dg.DagsterInstance], stripe_emulator: EmulatorServer
) -> None:
    _, instance = connect
    platform = stripe_emulator.account
    first, second = platform.add_connected_account(), platform.add_connected_account()
    defs = build_definitions()
    register_accounts(defs, instance)
    assert instance.get_dynamic_partitions(ACCOUNT_PARTITIONS) == [platform.id, second.id, first.id]

    platform.disconnect_connected_account(first.id)
    third = platform.add_connected_account()
    result = register_accounts(defs, instance)
    added, removed = result.dynamic_partitions_requests or []
    assert list(added.partition_keys) == [third.id]
    assert list(removed.partition_keys) == [first.id]
    assert set(instance.get_dynamic_partitions(ACCOUNT_PARTITIONS)) == {
        platform.id,
        second.id,
        third.id,
    }
    quiet = register_accounts(defs, instance)
    assert not quiet.dynamic_partitions_requests and quiet.skip_reason is not None


LOAD_ONE_ACCOUNT = """
import logging, sys
from stripe_promotions_pipeline import PipelineConfig, SyncRequest
from stripe_promotions_pipeline.fanout import load_account
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, force=True)
load_account(SyncRequest(), PipelineConfig.from_env(), sys.argv[1])
"""


def test_concurrent_first_loads_that_race_on_create_table_load_again(
    connect: tuple[Warehouse, dg.DagsterInstance],
    stripe_emulator: EmulatorServer,
    client: stripe.StripeClient,
) -> None:
    """Another account's pipeline creating a raw table at the moment this one does: dlt's
    CREATE TABLE fails (a unique violation in PostgreSQL's catalog); the load goes again."""
    warehouse, _ = connect
    account = connect_platform(stripe_emulator, client, connected=1)[1]
    other = psycopg2.connect(os.environ["DESTINATION__POSTGRES__CREDENTIALS"])
    with other.cursor() as cursor:
        cursor.execute("CREATE SCHEMA stripe_raw")
        other.commit()
        cursor.execute("CREATE TABLE stripe_raw.coupons (account_id TEXT)")  # not committed
    load = subprocess.Popen(
        [sys.executable, "-c", LOAD_ONE_ACCOUNT, account],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_a_lock_wait(load)  # the load's CREATE TABLE waits for the other one's
    finally:
        other.commit()
        other.close()
    output = load.communicate(timeout=120)[0]
    assert load.returncode == 0, output[-3000:]
    assert "changed the raw tables at the same moment (attempt 1 of" in output
    loaded = warehouse.rows(
        "SELECT DISTINCT account_id, id FROM stripe_raw.coupons WHERE NOT _deleted"
    )
    state = stripe_emulator.account.connected_account(account).state("coupon")
    assert {(row["account_id"], row["id"]) for row in loaded} == {(account, i) for i in state}


def wait_for_a_lock_wait(load: subprocess.Popen[str], deadline: float = 60) -> None:
    """Until the load's session waits for a lock, seen from a session of its own (one in a
    transaction would keep reading the snapshot of pg_stat_activity it took first)."""
    stop = time.monotonic() + deadline
    watcher = psycopg2.connect(os.environ["DESTINATION__POSTGRES__CREDENTIALS"])
    watcher.autocommit = True
    try:
        with watcher.cursor() as cursor:
            while time.monotonic() < stop and load.poll() is None:
                cursor.execute(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
                if cursor.fetchone()[0]:
                    return
                time.sleep(0.05)
    finally:
        watcher.close()
    output = load.communicate()[0] if load.poll() is not None else ""
    raise AssertionError(f"the load never reached the raw tables' DDL: {output[-3000:]}")


def test_the_fan_out_definitions_load_without_a_key(
    connect: tuple[Warehouse, dg.DagsterInstance], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, instance = connect
    monkeypatch.delenv("STRIPE_API_KEY")
    defs = build_definitions()
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    raw = {RAW, dg.AssetKey(["stripe_raw", "sync_all", "accounts"])}
    for key in raw:
        partitions = graph.get(key).partitions_def
        assert isinstance(partitions, dg.DynamicPartitionsDefinition)
        assert partitions.name == ACCOUNT_PARTITIONS
    for table in ("coupons", "products", "promotion_codes"):
        node = graph.get(dg.AssetKey(["stripe", table]))
        assert node.partitions_def is None and set(node.parent_keys) == raw
    for name in ("stripe_incremental", "stripe_sync_all"):
        job = defs.resolve_job_def(name)
        executor = job.executor_def.apply_config_mapping({}).value
        assert executor is not None and job.executor_def.name == "multiprocess"
        assert executor["config"]["max_concurrent"] == 3
        assert job.tags["stripe/pipeline"] == "fan_out"
    # No accounts yet: the schedules wait for the sensor.
    schedule = defs.resolve_schedule_def("stripe_hourly_incremental")
    skipped = schedule.evaluate_tick(dg.build_schedule_context(instance=instance))
    assert not skipped.run_requests and "stripe_accounts_sensor" in str(skipped.skip_message)
    # On DuckDB (one writer at a time), or when told, every account loads in one process.
    monkeypatch.setenv("STRIPE_PIPELINE_FAN_OUT", "false")
    assert not build_definitions().sensors
    monkeypatch.delenv("STRIPE_PIPELINE_FAN_OUT")
    monkeypatch.setenv("STRIPE_PIPELINE_DESTINATION", "duckdb")
    one_process = build_definitions()
    assert not one_process.sensors
    assert (
        dg.AssetKey(["stripe_raw", "events"])
        in one_process.resolve_asset_graph().get_all_asset_keys()
    )


def test_on_duckdb_every_account_loads_in_one_process_and_a_failed_one_fails_the_load(
    isolated: Path,
    stripe_emulator: EmulatorServer,
    client: stripe.StripeClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DuckDB takes one writer: the one-process assets load every account, the source
    overlapping them; an account that fails fails the load once the others are loaded."""
    accounts = connect_platform(stripe_emulator, client, connected=2)
    gone = accounts[2]
    stripe_emulator.account.disconnect_connected_account(gone)
    duckdb_file = isolated / "warehouse.duckdb"
    monkeypatch.setenv("SOURCES__STRIPE__API_BASE", stripe_emulator.url)
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(duckdb_file))
    monkeypatch.delenv("STRIPE_PIPELINE_DESTINATION", raising=False)
    monkeypatch.setenv("SOURCES__STRIPE__ACCOUNTS", ",".join(accounts))
    warehouse = Warehouse(
        "duckdb",
        PipelineConfig(
            duckdb_file=str(duckdb_file), pipelines_dir=str(isolated / "reader"), progress=False
        ),
    )
    defs = build_definitions()
    assert not defs.sensors
    result = defs.resolve_job_def("stripe_incremental").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    assert error is not None and f"{gone}: " in error.message and "1 of 3" in error.message
    loaded = warehouse.rows("SELECT DISTINCT account_id FROM stripe_raw.coupons")
    assert {row["account_id"] for row in loaded} == set(accounts[:2])

    monkeypatch.setenv("SOURCES__STRIPE__ACCOUNTS", "all")  # Stripe lists the connected ones
    result = (
        build_definitions()
        .resolve_job_def("stripe_incremental")
        .execute_in_process(instance=dg.DagsterInstance.ephemeral())
    )
    assert result.success
    assert_every_account_matches(warehouse, stripe_emulator, accounts[:2])
