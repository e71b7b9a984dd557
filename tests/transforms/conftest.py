"""The fixture every test here uses: an empty `stripe_raw` on each destination."""

from __future__ import annotations

from pathlib import Path

import dlt
import pytest

from tests.conftest import create_database
from tests.transforms.raw_warehouse import RawWarehouse


@pytest.fixture(params=["duckdb", "postgres"])
def raw(request: pytest.FixtureRequest, isolated: Path) -> RawWarehouse:
    """An empty `stripe_raw` on DuckDB (a file) or PostgreSQL (the session's server), loaded
    through a dlt pipeline named after the test module."""
    destination: dlt.destinations.duckdb | dlt.destinations.postgres
    if request.param == "postgres":
        socket_dir = request.getfixturevalue("postgres_socket")
        destination = dlt.destinations.postgres(credentials=create_database(socket_dir))
    else:
        destination = dlt.destinations.duckdb(str(isolated / "raw.duckdb"))
    pipeline = dlt.pipeline(
        pipeline_name=request.module.__name__.rpartition(".")[2].removeprefix("test_"),
        destination=destination,
        dataset_name="stripe_raw",
        pipelines_dir=str(isolated / "pipelines"),
    )
    return RawWarehouse(request.param, pipeline)
