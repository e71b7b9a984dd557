"""The API key never appears in anything the pipeline writes (invariant 4).

Runs that succeed and runs that fail (401, a destination that refuses, retries exhausted, a
load that cannot reach its file) use one distinctive key, with debug logging everywhere; then
every byte written is searched: output, logs, dlt's working folder (state, schemas, traces,
load packages: parquet read back, gzip opened), the DuckDB file and every table's rows.
"""

from __future__ import annotations

import gzip
import json
import pickle
import random
import signal
import tomllib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stripe_emulator import server as emulator_server
from stripe_emulator.server import EmulatorServer
from tests.conftest import create_database
from tests.reliability.harness import (
    Changes,
    CommandRun,
    command_env,
    main,
    seed,
    warehouse_for,
)
from tests.support import ROOT, Warehouse

SECRET_KEY = "sk_test_SECRETdistinctive9876543210"
NEEDLES = (SECRET_KEY, "SECRETdistinctive98765", "distinctive9876543210")
PG_PASSWORD = "pgSECRETpassw0rd"


def texts_of(path: Path) -> list[bytes]:
    """A file's bytes, plus what compressed or binary formats hold, decoded."""
    data = path.read_bytes()
    found = [data]
    try:
        if path.name.endswith(".gz"):
            found.append(gzip.decompress(data))
        elif path.suffix == ".parquet":
            rows = pq.read_table(path).to_pylist()
            found.append(json.dumps(rows, default=str).encode())
        elif path.suffix == ".pickle":
            found.append(repr(pickle.loads(data)).encode())
    except Exception as error:  # a file cut short by a failed run is still searched raw
        found.append(repr(error).encode())
    return found


def leaks_in_files(root: Path) -> list[str]:
    """Files under `root` that hold a needle, in any of their forms."""
    leaks = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        for text in texts_of(path):
            if any(needle.encode() in text for needle in NEEDLES):
                leaks.append(str(path))
                break
    return leaks


def table_dump(warehouse: Warehouse) -> str:
    """Every row of every table of both schemas (dlt's own tables included), as text."""
    tables = warehouse.rows(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema IN ('stripe_raw', 'stripe')"
    )
    assert len(tables) >= 10, tables
    dump = []
    for table in tables:
        rows = warehouse.rows(f"SELECT * FROM {table['table_schema']}.{table['table_name']}")
        dump.append(json.dumps(rows, default=str))
    return "\n".join(dump)


def assert_clean(text: str, what: str) -> None:
    for needle in (*NEEDLES, PG_PASSWORD):
        assert needle not in text, f"{needle!r} in {what}"


def run_main(args: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """The command in-process (debug logging on), its exit code and all it printed."""
    code = main(args)
    printed = capfd.readouterr()
    return code, printed.out + printed.err


def test_the_key_appears_nowhere(
    stripe_emulator: EmulatorServer,
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    account = stripe_emulator.account
    account.seed(coupons=8, products=4, promotion_codes=10)
    url = ["--api-base", stripe_emulator.url]
    caplog.set_level("DEBUG")
    monkeypatch.setenv("RUNTIME__LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("STRIPE_LOG", "debug")
    outputs: list[str] = []

    # 1. The command as a subprocess, the key from STRIPE_API_KEY, everything logged.
    env = command_env(isolated, SECRET_KEY, RUNTIME__LOG_LEVEL="DEBUG", STRIPE_LOG="debug")
    done = CommandRun([*url], isolated, env).finish()
    assert done.returncode == 0, done.stderr
    outputs.append(done.output)

    # 2. In-process, the key through dlt's own config (a secret dlt resolves and traces).
    monkeypatch.delenv("STRIPE_API_KEY")
    monkeypatch.setenv("SOURCES__STRIPE__API_KEY", SECRET_KEY)
    Changes(stripe_emulator, random.Random(seed())).make(4)
    code, printed = run_main([*url, "sync-all"], capfd)
    assert code == 0, printed
    outputs.append(printed)

    # 3. Failures: the destination file cannot be opened (refused before any work).
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(isolated / "missing" / "x.duckdb"))
    code, printed = run_main([*url], capfd)
    assert code == 1 and "Cannot connect to the duckdb destination" in printed
    outputs.append(printed)
    monkeypatch.delenv("DESTINATION__DUCKDB__CREDENTIALS")

    # ... PostgreSQL refusing (nothing listens), with a password in the URL.
    monkeypatch.setenv(
        "DESTINATION__POSTGRES__CREDENTIALS",
        f"postgresql://loader:{PG_PASSWORD}@127.0.0.1:9/warehouse",
    )
    code, printed = run_main([*url, "--destination", "postgres"], capfd)
    assert code == 1 and "Cannot connect to the postgres destination" in printed
    outputs.append(printed)

    # ... retries exhausted on 500s, then the key revoked (401).
    monkeypatch.setenv("SOURCES__STRIPE__MAX_ATTEMPTS", "2")
    account.faults.configure(error_rate=1.0)
    code, printed = run_main([*url], capfd)
    assert code == 1 and "Stripe kept failing (500)" in printed
    outputs.append(printed)
    account.faults.configure(error_rate=0.0)
    account.keys.set_access(SECRET_KEY, "revoked")
    code, printed = run_main([*url], capfd)
    assert code == 1 and "refused the API key" in printed and "sk_test_…3210" in printed
    outputs.append(printed)

    # ... and a run killed once it has extracted: its load package stays behind, to be searched.
    account.keys.set_access(SECRET_KEY, "full")
    Changes(stripe_emulator, random.Random(seed() + 1)).make(4)
    killed = CommandRun([*url, "sync-all"], isolated, env)
    assert killed.wait_for(("normalizing",)) == "normalizing"
    killed.signal(signal.SIGKILL)
    outputs.append(killed.finish().output)

    # 4. The key never reached the output, the logs, the files or the tables.
    assert "DEBUG" in outputs[0]  # the subprocess logged everything it could
    for number, output in enumerate(outputs, 1):
        assert_clean(output, f"the output of run {number}")
    assert_clean(caplog.text, "the log records")
    assert not leaks_in_files(isolated), "the key is in these files"
    assert list((isolated / "dlt" / "pipelines" / "stripe_pipeline").rglob("*.parquet"))
    assert (isolated / "dlt" / "pipelines" / "stripe_pipeline" / "trace.pickle").exists()
    assert_clean(table_dump(warehouse_for(isolated, stripe_emulator.url)), "the tables")


def test_the_search_finds_a_key_in_every_form(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "plain.json").write_text(json.dumps({"key": SECRET_KEY}))
    (tmp_path / "b.insert_values.gz").write_bytes(gzip.compress(SECRET_KEY.encode()))
    pq.write_table(pa.table({"k": [SECRET_KEY] * 50}), tmp_path / "c.parquet")
    (tmp_path / "d.pickle").write_bytes(pickle.dumps({"k": SECRET_KEY}))
    (tmp_path / "clean.txt").write_text("sk_test_…3210")
    found = {Path(p).name for p in leaks_in_files(tmp_path)}
    assert found == {"plain.json", "b.insert_values.gz", "c.parquet", "d.pickle"}


def test_the_key_is_not_in_postgres_tables_either(
    stripe_emulator: EmulatorServer,
    isolated: Path,
    postgres_socket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stripe_emulator.account.seed(coupons=5, products=3, promotion_codes=5)
    monkeypatch.setenv("STRIPE_API_KEY", SECRET_KEY)
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", create_database(postgres_socket))
    warehouse = warehouse_for(isolated, stripe_emulator.url, destination="postgres")
    warehouse.settings.duckdb_file = None
    warehouse.run()
    assert_clean(table_dump(warehouse), "the PostgreSQL tables")
    assert not leaks_in_files(isolated)


def test_telemetry_is_off_and_the_emulator_listens_on_loopback_only(
    stripe_emulator: EmulatorServer,
) -> None:
    config = tomllib.loads((ROOT / ".dlt" / "config.toml").read_text())
    assert config["runtime"]["dlthub_telemetry"] is False
    assert emulator_server.HOST == "127.0.0.1"
    runner: Any = stripe_emulator._runner
    assert runner is not None and runner.addresses
    assert {address[0] for address in runner.addresses} == {"127.0.0.1"}
