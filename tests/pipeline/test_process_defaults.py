"""Every entry point gets the same process defaults: the command before pyarrow is imported,
the others (verbs, Dagster, Airflow) when their pipeline is built."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ALLOCATOR = "import pyarrow as pa; print(pa.default_memory_pool().backend_name)"


def backend_after(code: str, cwd: Path, **env: str) -> str:
    """Arrow's allocator in a fresh interpreter after `code` ran (in `cwd`)."""
    environment = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{ALLOCATOR}"],
        env={**environment, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_the_command_picks_the_system_allocator_before_pyarrow_is_imported(tmp_path: Path) -> None:
    """The command (script and console script) runs through launch.main."""
    code = (
        "import sys\n"
        "sys.argv = ['stripe-pipeline', '--help']\n"
        "from stripe_promotions_pipeline import launch\n"
        "assert 'pyarrow' not in sys.modules\n"
        "try:\n    launch.main()\nexcept SystemExit:\n    pass"
    )
    assert backend_after(code, tmp_path) == "system"


def test_a_pipeline_built_anywhere_gets_the_same_defaults(tmp_path: Path) -> None:
    """Dagster, Airflow and the verbs build their pipeline with make_pipeline."""
    code = (
        "import os, pyarrow\n"
        "from stripe_promotions_pipeline import PipelineConfig, make_pipeline\n"
        "make_pipeline(PipelineConfig(duckdb_file='x.duckdb', pipelines_dir='dlt'))\n"
        "assert os.environ['RUNTIME__DLTHUB_TELEMETRY'] == 'false'\n"
        "assert 'memory_limit' in os.environ['DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG']"
    )
    assert backend_after(code, tmp_path) == "system"


def test_a_users_own_allocator_is_kept(tmp_path: Path) -> None:
    """ARROW_DEFAULT_MEMORY_POOL set by the user wins, for the command and the rest."""
    code = (
        "from stripe_promotions_pipeline import PipelineConfig, make_pipeline\n"
        "make_pipeline(PipelineConfig(duckdb_file='x.duckdb', pipelines_dir='dlt'))"
    )
    assert backend_after(code, tmp_path, ARROW_DEFAULT_MEMORY_POOL="jemalloc") == "jemalloc"
