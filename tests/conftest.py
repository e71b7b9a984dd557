"""Shared fixtures: the Stripe emulator over HTTP, the SDK, and warehouses to load into."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import stripe

from stripe_emulator.server import EmulatorServer
from stripe_promotions_pipeline import PipelineConfig
from stripe_promotions_pipeline.tuning import DUCKDB_GLOBAL_CONFIG, LOAD_IDS
from tests.support import TEST_KEY, Warehouse, setup_client

pytest_plugins = ["stripe_emulator.pytest_plugin"]


@pytest.fixture
def client(stripe_emulator: EmulatorServer) -> stripe.StripeClient:
    """The official SDK, unmodified, talking to the emulator over HTTP."""
    return setup_client(stripe_emulator.url)


@pytest.fixture(scope="session")
def postgres_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL 16 for the whole session (the `pgserver` wheel); its socket folder."""
    from pgserver.postgres_server import get_server

    server = get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="delete")
    try:
        yield str(server.get_postmaster_info().socket_dir)
    finally:
        server.cleanup()


def create_database(socket_dir: str) -> str:
    """A fresh database on the session's server, so tests never see each other's tables."""
    import psycopg2

    name = f"t_{uuid.uuid4().hex[:12]}"
    connection = psycopg2.connect(dbname="postgres", user="postgres", host=socket_dir)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    connection.close()
    return f"postgresql://postgres:x@localhost/{name}?host={socket_dir}"


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder of its own, dlt's data there too, the test key, no telemetry."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    monkeypatch.setenv("STRIPE_API_KEY", TEST_KEY)
    monkeypatch.setenv(LOAD_IDS, "true")  # as every run sets it (raw_warehouse loads direct)
    for name in ("SOURCES__STRIPE__API_KEY", "SOURCES__STRIPE__API_BASE", DUCKDB_GLOBAL_CONFIG):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(
    request: pytest.FixtureRequest,
    isolated: Path,
    stripe_emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Warehouse:
    """DuckDB (a file) and PostgreSQL (a real server): every test using this runs on both."""
    settings = PipelineConfig(
        api_base=stripe_emulator.url,
        pipelines_dir=str(isolated / "pipelines"),
        progress=False,
    )
    if request.param == "postgres":
        socket_dir = request.getfixturevalue("postgres_socket")
        monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", create_database(socket_dir))
        settings = replace(settings, destination="postgres")
    else:
        settings = replace(settings, duckdb_file=str(isolated / "stripe_pipeline.duckdb"))
    return Warehouse(request.param, settings)


@pytest.fixture
def duckdb_warehouse(isolated: Path, stripe_emulator: EmulatorServer) -> Warehouse:
    """DuckDB only, for tests about the command and errors rather than the destination."""
    return Warehouse(
        "duckdb",
        PipelineConfig(
            api_base=stripe_emulator.url,
            pipelines_dir=str(isolated / "pipelines"),
            duckdb_file=str(isolated / "stripe_pipeline.duckdb"),
            progress=False,
        ),
    )
