"""The built wheel: import packages named for the project, the SQL inside, a console script
that runs, and the emulator's dependencies only in its extra."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "stripe_promotions",
    "stripe_promotions_transforms",
    "stripe_promotions_pipeline",
    "stripe_emulator",
}
# Names of the repository's folders that must never be top-level packages in site-packages.
GENERIC = {"sources", "transforms", "pipelines", "tests", "orchestration", "benchmarks"}
EMULATOR_ONLY = {"aiohttp", "sortedcontainers", "stripe"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout, installed (without dependencies) into a folder."""
    wheels = tmp_path_factory.mktemp("wheels")
    # The venv's setuptools builds it when it has one (no index needed); else pip's isolation.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", *isolation, "-w", str(wheels), str(ROOT)],
        check=True,
        timeout=600,
    )
    (wheel,) = wheels.glob("stripe_promotions_pipeline-*.whl")
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        timeout=600,
    )
    return target


def test_the_wheel_installs_only_packages_named_for_the_project(installed: Path) -> None:
    """No top-level `sources` or `transforms` beside a user's own: only project names."""
    top = {p.name for p in installed.iterdir() if (p / "__init__.py").exists()}
    assert top == PACKAGES
    assert not {p.name for p in installed.iterdir()} & GENERIC
    sql = {p.name for p in (installed / "stripe_promotions_transforms").glob("*.sql")}
    assert {"_current_state.sql", "coupons.sql", "products.sql", "promotion_codes.sql"} <= sql


def test_the_console_script_runs_from_the_installed_packages(
    installed: Path, tmp_path: Path
) -> None:
    """`stripe-pipeline --help` works outside the repository, from the wheel's own files."""
    env = {**os.environ, "PYTHONPATH": str(installed)}
    help_text = subprocess.run(
        [str(installed / "bin" / "stripe-pipeline"), "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert help_text.returncode == 0, help_text.stderr
    assert help_text.stdout.startswith("usage: stripe-pipeline")
    for subcommand in ("sync-all", "sync-ids", "sync-batch", "soft-delete", "transform"):
        assert subcommand in help_text.stdout
    where = subprocess.run(
        [sys.executable, "-c", "import stripe_promotions_transforms as t; print(t.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert Path(where.stdout.strip()).is_relative_to(installed), where.stdout


def test_the_emulator_and_demo_dependencies_are_an_extra(installed: Path) -> None:
    """The connector does not pull in the emulator's web server or the stripe SDK."""
    (metadata,) = installed.glob("stripe_promotions_pipeline-*.dist-info/METADATA")
    requires = Parser().parsestr(metadata.read_text()).get_all("Requires-Dist") or []
    core = {r.split("==")[0].split("[")[0].strip().lower() for r in requires if ";" not in r}
    emulator = {r.split("==")[0].strip().lower() for r in requires if 'extra == "emulator"' in r}
    assert not core & EMULATOR_ONLY
    assert emulator == EMULATOR_ONLY
    (entry_points,) = installed.glob("stripe_promotions_pipeline-*.dist-info/entry_points.txt")
    assert "stripe-pipeline = stripe_promotions_pipeline.launch:main" in entry_points.read_text()
