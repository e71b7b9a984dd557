"""The Airflow DAG against the emulator: it parses cleanly and `dag.test()` runs it to success.

Airflow runs in subprocesses with an AIRFLOW_HOME, a DAGs folder (a copy of the DAG file, as a
deployment would have) and a temp folder of their own: `airflow db migrate`, then, per run,
`airflow_dag_runner.py`, which parses the DAGs folder and calls `dag.test()` in its process.
The emulator serves from this process; its URL reaches the DAG through SOURCES__STRIPE__API_BASE.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import stripe

from stripe_emulator.server import EmulatorServer
from stripe_promotions_pipeline import PipelineConfig
from tests.conftest import create_database
from tests.orchestration.checks import (
    assert_every_account_matches,
    assert_matches_stripe,
    connect_platform,
)
from tests.support import TEST_KEY, Warehouse, as_json

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "orchestration" / "airflow" / "stripe_pipeline_dag.py"
RUNNER = Path(__file__).with_name("airflow_dag_runner.py")
DAG_ID = "stripe_pipeline"
LOAD, TRANSFORM = "load.stripe_pipeline", "transform"
SUCCESS = {LOAD: "success", TRANSFORM: "success"}


@dataclass
class Airflow:
    """An Airflow installation of its own: its environment; commands run in subprocesses."""

    env: dict[str, str]
    output: str = ""

    def run(self, *args: str, timeout: float = 120) -> str:
        try:
            done = subprocess.run(
                args, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as error:
            output = str(error.stdout or "") + str(error.stderr or "")
            raise AssertionError(f"{' '.join(args)} timed out:\n{output[-4000:]}") from None
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{output[-4000:]}"
        return output

    def test(
        self, conf: dict[str, Any] | None = None, *options: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """`dag.test()` in a fresh process: what it parsed, and how the run ended."""
        output = self.run(sys.executable, str(RUNNER), DAG_ID, json.dumps(conf or {}), *options)
        self.output = output
        return tagged(output, "PARSED"), tagged(output, "RESULT")

    def tail(self) -> str:
        return "\n".join(self.output.splitlines()[-60:])


def tagged(output: str, tag: str) -> dict[str, Any]:
    """The JSON on the runner's line starting with `tag`."""
    lines = [line for line in output.splitlines() if line.startswith(f"{tag} ")]
    assert lines, f"no {tag} line from the DAG runner; its output ended:\n{output[-4000:]}"
    result: dict[str, Any] = json.loads(lines[-1].removeprefix(f"{tag} "))
    return result


@pytest.fixture
def airflow(isolated: Path, stripe_emulator: EmulatorServer) -> Airflow:
    """AIRFLOW_HOME, DAGs folder and TMPDIR under the test's folder; a migrated database."""
    dags = isolated / "dags"
    dags.mkdir()
    shutil.copy(DAG_FILE, dags)
    (isolated / "tmp").mkdir()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIRFLOW", "DLT_", "DESTINATION__", "SOURCES__", "STRIPE_"))
    }
    env.update(
        {
            "AIRFLOW_HOME": str(isolated / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "STRIPE_API_KEY": TEST_KEY,
            "SOURCES__STRIPE__API_BASE": stripe_emulator.url,
            "DESTINATION__DUCKDB__CREDENTIALS": str(isolated / "warehouse.duckdb"),
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "TMPDIR": str(isolated / "tmp"),  # dlt's helper keeps its working folders there
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        }
    )
    airflow = Airflow(env)
    airflow.run(str(Path(sys.executable).parent / "airflow"), "db", "migrate")
    return airflow


@pytest.fixture
def warehouse(isolated: Path) -> Warehouse:
    """Reads of the DuckDB file the DAG loads, through a pipeline of their own."""
    return Warehouse(
        "duckdb",
        PipelineConfig(
            duckdb_file=str(isolated / "warehouse.duckdb"),
            pipelines_dir=str(isolated / "reader"),
            progress=False,
        ),
    )


def test_dag_test_loads_stripe_and_picks_up_changes(
    airflow: Airflow,
    warehouse: Warehouse,
    stripe_emulator: EmulatorServer,
    client: stripe.StripeClient,
) -> None:
    stripe_emulator.account.seed(preset="demo")
    parsed, first = airflow.test()
    assert parsed["import_errors"] == {} and parsed["dag_ids"] == [DAG_ID]
    assert parsed["schedule"] == "@hourly" and parsed["max_active_runs"] == 1
    assert parsed["params"] == {"sync_all": False}
    assert parsed["tasks"] == {
        LOAD: {"retries": 3, "retry_delay": 300.0, "upstream": []},
        TRANSFORM: {"retries": 3, "retry_delay": 300.0, "upstream": [LOAD]},
    }
    assert first == {"state": "success", "tasks": SUCCESS}, airflow.tail()
    assert len(warehouse.current("coupons")) == 24
    assert len(warehouse.current("promotion_codes")) == 60
    assert_matches_stripe(warehouse, stripe_emulator)

    live_coupons = sorted(stripe_emulator.account.state("coupon"))
    updated, deleted = live_coupons[0], live_coupons[1]
    client.v1.coupons.update(updated, params={"metadata": {"campaign": "airflow"}})
    client.v1.coupons.delete(deleted)
    product = client.v1.products.create(params={"name": "Scheduled by Airflow"})

    _, second = airflow.test()
    assert second == {"state": "success", "tasks": SUCCESS}, airflow.tail()
    coupons = warehouse.current("coupons")
    assert as_json(coupons[updated]["metadata"])["campaign"] == "airflow"
    # The deletion only reaches the tables through the events: the second run read them from
    # the cursor the first one left, restored from the destination (dlt's helper wipes the
    # local working folder after each task).
    assert coupons[deleted]["is_deleted"] is True and coupons[deleted]["deleted_at"] is not None
    assert warehouse.current("products")[product.id]["is_deleted"] is False
    assert_matches_stripe(warehouse, stripe_emulator)
    through_events = warehouse.rows(
        "SELECT DISTINCT id FROM stripe_raw.coupons WHERE _observed_via = 'event'"
    )
    assert {row["id"] for row in through_events} == {updated, deleted}


def test_a_refused_key_fails_at_once_says_why_and_never_shows_the_key(
    airflow: Airflow, stripe_emulator: EmulatorServer
) -> None:
    stripe_emulator.account.keys.set_access(TEST_KEY, "revoked")
    # With the DAG's own retries: a retry would wait 5 minutes, and the runner time out.
    _, result = airflow.test({}, "--keep-retries")
    assert result == {
        "state": "failed",
        "tasks": {LOAD: "failed", TRANSFORM: "upstream_failed"},
    }, airflow.tail()
    errors = [line for line in airflow.output.splitlines() if "AirflowFailException: " in line]
    assert errors, airflow.tail()
    assert "key" in errors[-1].lower() and "generator already executing" not in errors[-1]
    assert TEST_KEY not in airflow.output


def test_connect_loads_each_account_in_a_mapped_task_into_postgres(
    airflow: Airflow,
    isolated: Path,
    stripe_emulator: EmulatorServer,
    client: stripe.StripeClient,
    postgres_socket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    accounts = connect_platform(stripe_emulator, client, connected=5)
    credentials = create_database(postgres_socket)
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", credentials)  # for the reads
    airflow.env.update(
        STRIPE_PIPELINE_DESTINATION="postgres",
        DESTINATION__POSTGRES__CREDENTIALS=credentials,
        SOURCES__STRIPE__ACCOUNTS="all",
        STRIPE_PIPELINE_ACCOUNTS_AT_ONCE="3",
        DLT_DATA_DIR=str(isolated / "dlt"),
    )
    parsed, result = airflow.test()
    assert parsed["import_errors"] == {} and parsed["dag_ids"] == [DAG_ID]
    retried = {"retries": 3, "retry_delay": 300.0}
    assert parsed["tasks"] == {
        "accounts": {**retried, "upstream": []},
        "load": {**retried, "upstream": ["accounts"]},
        TRANSFORM: {**retried, "upstream": ["load"]},
    }
    assert parsed["max_active_tis_per_dagrun"] == {"load": 3}
    assert result == {
        "state": "success",
        "tasks": {"accounts": "success", "load": "success", TRANSFORM: "success"},
    }, airflow.tail()
    assert tagged(airflow.output, "MAPPED") == {"load": ["success"] * len(accounts)}
    assert TEST_KEY not in airflow.output
    warehouse = Warehouse(
        "postgres",
        PipelineConfig(
            destination="postgres", pipelines_dir=str(isolated / "reader"), progress=False
        ),
    )
    assert_every_account_matches(warehouse, stripe_emulator, accounts)
    states = warehouse.rows("SELECT DISTINCT pipeline_name FROM stripe_raw._dlt_pipeline_state")
    assert {row["pipeline_name"] for row in states} == {
        f"stripe_pipeline__{account}" for account in accounts
    }
