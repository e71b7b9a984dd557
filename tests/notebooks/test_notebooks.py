"""The analysts' notebooks: executed top to bottom against a database loaded from the emulator.

Every notebook in notebooks/ runs in a real Jupyter kernel (this venv's Python), reading the
DuckDB file through DESTINATION__DUCKDB__CREDENTIALS as an analyst's would. A cell error, or a
key result the notebook finds empty (its own asserts), fails the test. Also here: what DuckDB's
one-writer rule does to the pipeline, and that a notebook never keeps the pipeline out.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import nbformat
import pytest
import stripe
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from stripe import RequestOptions

from stripe_emulator import serve
from stripe_emulator.server import EmulatorServer
from stripe_promotions_pipeline import PipelineConfig, RunError, SyncRequest, run_sync
from stripe_promotions_pipeline.demo import make_changes
from tests.support import TEST_KEY, setup_client

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
OVERVIEW = NOTEBOOKS_DIR / "promotions_overview.ipynb"
ENV_VAR = "DESTINATION__DUCKDB__CREDENTIALS"
SHOPS = ("north-shop", "south-shop")  # connected accounts, by their email's name
CELL_TIMEOUT = 120  # seconds per cell; the demo load (if a notebook makes one) is the slowest
DAY = 24 * 3600
SPRING_CODES = ("SPRING20", "SPRING20VIP", "SPRING20FRIENDS")  # the campaign of later_weeks
KERNEL = "stripe-notebooks-venv"
# A process holding the file, as an analyst's DuckDB shell or a notebook would: it opens the
# file, says so, and keeps it open until its stdin closes.
HOLDER = """
import sys, duckdb
connection = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "read_only")
print("open", flush=True)
sys.stdin.read()
connection.close()
"""


@dataclass
class History:
    """What the history tables hold, worked out here from their rows (not with the as-of
    helper or the notebook's SQL): the notebook's section 8 must say the same."""

    # (month, redeemable promotion codes, valid coupons) at each month's end, oldest first;
    # the month end is the first instant of the next month, as in docs/HISTORY.md
    month_ends: list[tuple[str, int, int]]
    at_last_sync: tuple[int, int]  # the same at the last sync (the newest synced_at)
    last_week: dict[str, int]  # object -> versions after the first, in the 7 days before it
    deactivated: dict[str, str]  # code -> request id: deactivated in those 7 days, by request


@dataclass
class Loaded:
    """A DuckDB file the real pipeline loaded from the emulator, and what it holds."""

    emulator: EmulatorServer
    settings: PipelineConfig
    database: Path
    deleted: dict[str, str]  # id -> object type, every row with is_deleted
    accounts: dict[str, int]  # account id -> its redeemable promotion codes
    history: History

    def run(self) -> None:
        """One more incremental pipeline run into the same file."""
        run_sync(SyncRequest(), self.settings)


def later_weeks(
    client: stripe.StripeClient, platform: Any, run: Callable[[], object]
) -> dict[str, str]:
    """Nine simulated weeks after the first loads, through the emulator's clock, with a run
    after each step (each under the 29 days after which the pipeline re-lists instead of
    reading events): in week 3 a spring campaign (a coupon, three codes) and a renamed product;
    in week 6 the campaign's metadata, a fourth code and two redemptions; in the last week two
    of its codes deactivated, by requests with idempotency keys. Seeded codes and coupons expire
    on the way. With the first loads on the 3rd of a month (`to_next_month`), weeks 3 and 6 fall
    before the month's end and the next one, and the last week after. Returns the deactivated
    codes and the ids of the requests that deactivated them."""
    platform.advance_clock(21 * DAY)
    client.v1.coupons.create(
        params={"id": "SPRING20", "name": "20% off", "percent_off": 20, "duration": "once"}
    )
    codes = [
        client.v1.promotion_codes.create(
            params={"code": code, "promotion": {"type": "coupon", "coupon": "SPRING20"}}
        )
        for code in SPRING_CODES
    ]
    product = client.v1.products.list(params={"limit": 1, "active": True}).data[0]
    client.v1.products.update(product.id, params={"name": f"{product.name} (2nd edition)"})
    run()
    platform.advance_clock(21 * DAY)
    client.v1.coupons.update("SPRING20", params={"metadata": {"campaign": "spring"}})
    client.v1.promotion_codes.create(
        params={"code": "SPRING20TEAM", "promotion": {"type": "coupon", "coupon": "SPRING20"}}
    )
    for _ in range(2):
        platform.redeem(codes[0].id)
    run()
    platform.advance_clock(19 * DAY)
    deactivated: dict[str, str] = {}
    for code in codes[1:]:
        changed = client.v1.promotion_codes.update(
            code.id, params={"active": False}, options={"idempotency_key": f"off-{code.code}"}
        )
        assert changed.last_response is not None and changed.last_response.request_id
        deactivated[code.code] = changed.last_response.request_id
    platform.advance_clock(2 * DAY)
    run()
    return deactivated


def to_next_month(platform: Any) -> None:
    """Move the emulator's clock to noon on the 3rd of next month (it only moves forward)."""
    now = datetime.fromtimestamp(platform.clock.now(), UTC)
    platform.advance_clock(month_after(now).timestamp() + 2.5 * DAY - now.timestamp())


def month_after(at: datetime) -> datetime:
    """The first instant of the month after `at`'s (UTC)."""
    return datetime(at.year + at.month // 12, at.month % 12 + 1, 1, tzinfo=UTC)


def read_history(connection: duckdb.DuckDBPyConnection, deactivated: dict[str, str]) -> History:
    """The history tables' answers to section 8's questions, from their rows, in Python."""

    def versions(table: str, flag: str) -> list[tuple[float, float | None, bool]]:
        rows = connection.execute(
            f"SELECT epoch(valid_from), epoch(valid_to), {flag} FROM stripe.{table}_history"
        ).fetchall()
        return [(start, end, bool(value)) for start, end, value in rows]

    codes = versions("promotion_codes", "is_redeemable")
    coupons = versions("coupons", "status = 'valid'")
    [(first, last)] = connection.execute(
        "SELECT MIN(epoch(valid_from)), MAX(epoch(synced_at)) FROM ("
        + " UNION ALL ".join(
            f"SELECT valid_from, synced_at FROM stripe.{t}_history"
            for t in ("coupons", "products", "promotion_codes")
        )
        + ")"
    ).fetchall()

    def holding(rows: list[tuple[float, float | None, bool]], at: float) -> int:
        return sum(flag for start, end, flag in rows if start <= at and (end is None or end > at))

    month_ends = []
    end = month_after(datetime.fromtimestamp(first, UTC))
    while (at := end.timestamp()) <= last:
        month = datetime.fromtimestamp(at - DAY, UTC).strftime("%Y-%m")
        month_ends.append((month, holding(codes, at), holding(coupons, at)))
        end = month_after(end)
    week_start = last - 7 * DAY
    last_week = {
        name: connection.execute(
            f"SELECT COUNT(*) FROM stripe.{table}_history "
            "WHERE version > 1 AND epoch(valid_from) >= ?",
            [week_start],
        ).fetchall()[0][0]
        for name, table in (
            ("coupon", "coupons"),
            ("product", "products"),
            ("promotion_code", "promotion_codes"),
        )
    }
    at_last_sync = (holding(codes, last), holding(coupons, last))
    return History(month_ends, at_last_sync, last_week, deactivated)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    """A Connect platform and two connected accounts (one with a coupon id the platform has
    too): seed, load all of them, change (deletions among them), load, nine simulated weeks of
    changes and loads, soft-delete a code."""
    folder = tmp_path_factory.mktemp("notebooks")
    with pytest.MonkeyPatch.context() as patch, serve() as emulator:
        patch.setenv("DLT_DATA_DIR", str(folder / "dlt"))
        patch.setenv("JUPYTER_RUNTIME_DIR", str(folder / "jupyter"))  # kernels' connection files
        patch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
        patch.setenv("STRIPE_API_KEY", TEST_KEY)
        for name in ("SOURCES__STRIPE__API_KEY", "SOURCES__STRIPE__API_BASE", ENV_VAR):
            patch.delenv(name, raising=False)
        platform = emulator.account
        to_next_month(platform)  # the history's month ends then fall between its changes
        platform.seed(preset="demo")
        shops = [platform.add_connected_account(email=f"{n}@example.com") for n in SHOPS]
        for number, shop in enumerate(shops, start=2):
            shop.seed(coupons=6, products=4, promotion_codes=20, seed=number)
        database = folder / "stripe_pipeline.duckdb"
        settings = PipelineConfig(
            api_base=emulator.url,
            pipelines_dir=str(folder / "pipelines"),
            duckdb_file=str(database),
            progress=False,
            accounts="all",  # the platform's own account and every connected one
        )
        run_sync(SyncRequest(), settings)
        client = setup_client(emulator.url)
        make_changes(client, platform)  # an archive, a deactivation, deletions...
        # In the first shop: a coupon WINTER15 too (make_changes adds the platform's), with a
        # code; in the second: a deleted coupon.
        first: RequestOptions = {"stripe_account": shops[0].id}
        client.v1.coupons.create(
            params={"id": "WINTER15", "name": "15% off", "percent_off": 15, "duration": "once"},
            options=first,
        )
        client.v1.promotion_codes.create(
            params={"code": "SHOP15", "promotion": {"type": "coupon", "coupon": "WINTER15"}},
            options=first,
        )
        second: RequestOptions = {"stripe_account": shops[1].id}
        gone = client.v1.coupons.list(params={"limit": 1}, options=second).data[0]
        client.v1.coupons.delete(gone.id, options=second)
        run_sync(SyncRequest(), settings)
        deactivated = later_weeks(client, platform, lambda: run_sync(SyncRequest(), settings))
        code = client.v1.promotion_codes.list(params={"limit": 1, "active": True}).data[0]
        run_sync(  # a verb acts on one account: here the key's own
            SyncRequest("soft_delete", ("promotion_code",), ids=(code.id,), reason="leaked"),
            replace(settings, accounts=None),
        )
        with duckdb.connect(str(database), read_only=True) as connection:
            deleted = dict(
                connection.execute(
                    "SELECT id, 'coupon' FROM stripe.coupons WHERE is_deleted UNION ALL "
                    "SELECT id, 'product' FROM stripe.products WHERE is_deleted UNION ALL "
                    "SELECT id, 'promotion_code' FROM stripe.promotion_codes WHERE is_deleted"
                ).fetchall()
            )
            accounts = dict(
                connection.execute(
                    "SELECT account_id, COUNT(*) FILTER (WHERE status = 'redeemable') "
                    "FROM stripe.promotion_codes GROUP BY account_id"
                ).fetchall()
            )
            [(shared,)] = connection.execute(
                "SELECT COUNT(DISTINCT account_id) FROM stripe.coupons WHERE id = 'WINTER15'"
            ).fetchall()
            history = read_history(connection, deactivated)
        assert set(deleted.values()) == {"coupon", "product", "promotion_code"}
        assert gone.id in deleted
        assert set(accounts) == {platform.id, *(shop.id for shop in shops)}
        assert shared == 2
        # Content for section 8: month ends that differ, and last week's changes.
        assert len(history.month_ends) >= 2
        assert len({counts[1:] for counts in history.month_ends}) >= 2, history.month_ends
        assert history.at_last_sync[0] == sum(accounts.values())
        assert history.last_week["promotion_code"] >= len(deactivated) + 1  # and the soft delete
        yield Loaded(emulator, settings, database, deleted, accounts, history)


@pytest.fixture(scope="module")
def kernels(tmp_path_factory: pytest.TempPathFactory) -> KernelSpecManager:
    """A kernel spec for this very Python (the venv's), whatever Jupyter has installed."""
    folder = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(folder / KERNEL)
    return KernelSpecManager(kernel_dirs=[str(folder)])


@pytest.fixture
def reading(loaded: Loaded, monkeypatch: pytest.MonkeyPatch) -> Loaded:
    """Notebooks started from here read the loaded file, as an analyst's would."""
    monkeypatch.setenv(ENV_VAR, str(loaded.database))
    return loaded


def read_notebook(path: Path) -> Any:
    """A notebook as nbformat's node tree (version 4)."""
    return nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]


def notebook_client(
    path: Path, kernels: KernelSpecManager, cwd: Path = NOTEBOOKS_DIR
) -> NotebookClient:
    """A client that runs `path` in this venv's kernel, in `cwd` (Jupyter's: the notebook's)."""
    manager = AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=kernels)
    return NotebookClient(
        read_notebook(path),
        km=manager,
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(cwd)}},
    )


def execute(
    client: NotebookClient,
    *,
    stop_after: str | None = None,
    between: Callable[[], None] | None = None,
) -> None:
    """Run the cells in order (up to the one tagged `stop_after`); `between` halfway through."""
    cells = client.nb.cells
    with client.setup_kernel():
        for index, cell in enumerate(cells):
            if between is not None and index == len(cells) // 2:
                between()
            client.execute_cell(cell, index)
            if stop_after is not None and stop_after in cell.metadata.get("tags", []):
                return
    assert stop_after is None, f"no cell is tagged {stop_after!r}"


def output_text(cells: list[Any]) -> str:
    """Everything the cells printed or displayed, as text."""
    parts: list[str] = []
    for cell in cells:
        for output in cell.get("outputs", []):
            parts.append(str(output.get("text", "")))
            data = output.get("data", {})
            parts.extend(str(data.get(kind, "")) for kind in ("text/plain", "text/markdown"))
            parts.append(str(output.get("evalue", "")))
    return "\n".join(parts)


class Holder:
    """Another process with the DuckDB file open, read-only or read-write, until released."""

    def __init__(self, database: Path, mode: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(database), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "open"

    def release(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()
        self.process.wait(timeout=30)


@pytest.fixture
def hold() -> Iterator[Callable[[Path, str], Holder]]:
    """Start holders; every one is released at the end of the test, whatever happened."""
    holders: list[Holder] = []

    def start(database: Path, mode: str) -> Holder:
        holders.append(Holder(database, mode))
        return holders[-1]

    yield start
    for holder in holders:
        holder.release()


def test_there_are_notebooks_and_none_is_committed_with_outputs() -> None:
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOKS_DIR}"
    for path in NOTEBOOKS:
        notebook = read_notebook(path)
        nbformat.validate(notebook)
        dirty = [
            index
            for index, cell in enumerate(notebook.cells)
            if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
        ]
        assert not dirty, (
            f"{path.name}: cells {dirty} have outputs or execution counts; clear them before "
            "committing (Jupyter: Edit > Clear Outputs of All Cells, then save)."
        )


def check_overview(cells: list[Any], loaded: Loaded) -> None:
    """promotions_overview: every deleted row in its deletions answer; the README's chart drawn;
    every account in the answers by account."""
    [deletions] = [c for c in cells if "deletion_summary = sql(" in c.source]
    shown = output_text([deletions])
    for object_id, object_type in loaded.deleted.items():
        assert object_id in shown and object_type in shown
    assert "leaked" in shown  # the soft delete's reason
    [chart] = [c for c in cells if "chart:promotion_codes_by_status" in c.metadata.get("tags", [])]
    assert any("image/png" in output.get("data", {}) for output in chart.outputs)
    # By account: every account in the overview and the chart, and the account with the most
    # redeemable codes (the default filter) with that many.
    [per_account] = [c for c in cells if "per_account = sql(" in c.source]
    shown = output_text([per_account])
    assert f"{len(loaded.accounts)} Stripe account(s)" in shown
    assert all(account in shown for account in loaded.accounts)
    [by_account] = [c for c in cells if "chart:codes_by_account" in c.metadata.get("tags", [])]
    assert any("image/png" in output.get("data", {}) for output in by_account.outputs)
    [one] = [c for c in cells if "WHERE p.account_id = ?" in c.source]
    top, redeemable = min(loaded.accounts.items(), key=lambda item: (-item[1], item[0]))
    assert f"Redeemable promotion codes in account {top}: {redeemable}\n" in output_text([one])
    check_history(cells, loaded.history)


def check_history(cells: list[Any], history: History) -> None:
    """promotions_overview, section 8: the counts at each month's end and at the last sync as
    the history tables' rows give them; last week's changes per object; the codes deactivated
    last week, each with the request that did it and its idempotency key."""
    [ends] = [c for c in cells if "month_ends = sql(" in c.source]
    shown = output_text([ends])
    for label, column in (("Redeemable promotion codes", 1), ("Valid coupons", 2)):
        listed = ", ".join(f"{end[0]}: {end[column]}" for end in history.month_ends)
        last = history.at_last_sync[column - 1]
        assert f"{label} at each month's end: {listed}; at the last sync: {last}.\n" in shown
    assert "stripe.promotion_codes_as_of finds 0 codes" in shown  # before the first sync
    [chart] = [c for c in cells if "chart:month_ends" in c.metadata.get("tags", [])]
    assert any("image/png" in output.get("data", {}) for output in chart.outputs)
    [changes] = [c for c in cells if "last_week = sql(" in c.source]
    per_object = ", ".join(f"{name}: {n}" for name, n in history.last_week.items())
    total = sum(history.last_week.values())
    assert f"before the last sync: {total} ({per_object}).\n" in output_text([changes])
    [deactivations] = [c for c in cells if "deactivated = sql(" in c.source]
    shown = output_text([deactivations])
    count = len(history.deactivated)
    assert f"Promotion codes deactivated in the 7 days before the last sync: {count}\n" in shown
    for code, request in history.deactivated.items():
        assert any(
            f" {code} " in line and request in line and f"off-{code}" in line
            for line in shown.splitlines()
        ), (code, request, shown)


CHECKS: dict[str, Callable[[list[Any], Loaded], None]] = {"promotions_overview": check_overview}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom_and_never_holds_the_file(
    path: Path, reading: Loaded, kernels: KernelSpecManager
) -> None:
    client = notebook_client(path, kernels)
    # Halfway through, with the kernel alive and its data loaded, the pipeline must be able to
    # write: a notebook keeping a connection open (even read-only) would fail this run.
    execute(client, between=reading.run)
    text = output_text(client.nb.cells)
    assert str(reading.database) in text
    assert "DEMO DATA" not in text
    if path.stem in CHECKS:
        CHECKS[path.stem](client.nb.cells, reading)


def test_an_empty_key_result_fails_the_notebook(
    loaded: Loaded, kernels: KernelSpecManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty.duckdb"
    with duckdb.connect(str(empty)) as connection:
        connection.execute(f"ATTACH '{loaded.database}' AS loaded (READ_ONLY)")
        connection.execute("CREATE SCHEMA stripe")
        for table in ("coupons", "products", "promotion_codes"):
            connection.execute(
                f"CREATE TABLE stripe.{table} AS SELECT * FROM loaded.stripe.{table} LIMIT 0"
            )
    monkeypatch.setenv(ENV_VAR, str(empty))
    with pytest.raises(CellExecutionError, match="no rows"):
        execute(notebook_client(OVERVIEW, kernels))


def test_a_file_from_before_connect_is_refused_with_what_to_do(
    loaded: Loaded, kernels: KernelSpecManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    older = tmp_path / "older.duckdb"
    with duckdb.connect(str(older)) as connection:
        connection.execute(f"ATTACH '{loaded.database}' AS loaded (READ_ONLY)")
        connection.execute("CREATE SCHEMA stripe")
        for table in ("coupons", "products", "promotion_codes"):
            connection.execute(
                f"CREATE TABLE stripe.{table} AS "
                f"SELECT * EXCLUDE (account_id) FROM loaded.stripe.{table}"
            )
    monkeypatch.setenv(ENV_VAR, str(older))
    with pytest.raises(CellExecutionError, match="no account_id"):
        execute(notebook_client(OVERVIEW, kernels), stop_after="snapshot")


def test_without_the_pipelines_file_the_notebook_says_it_shows_demo_data(
    loaded: Loaded, kernels: KernelSpecManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(loaded.database, tmp_path / "stripe_demo.duckdb")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing.duckdb"))
    client = notebook_client(OVERVIEW, kernels, cwd=tmp_path)
    execute(client, stop_after="snapshot")
    text = output_text(client.nb.cells)
    assert "DEMO DATA" in text and "missing.duckdb" in text
    assert str(tmp_path / "stripe_demo.duckdb") in text
    assert "(demo data)" in text


@pytest.mark.parametrize("mode", ["read_write", "read_only"])
def test_a_process_holding_the_file_stops_the_pipeline_with_a_clear_message(
    mode: str, loaded: Loaded, hold: Callable[[Path, str], Holder]
) -> None:
    # DuckDB: one process may write a file, and only while no other process has it open; a
    # read-only connection elsewhere blocks the writer too.
    holder = hold(loaded.database, mode)
    with pytest.raises(RunError) as raised:
        loaded.run()
    message = str(raised.value)
    assert str(loaded.database) in message
    assert "open in another process" in message
    assert "only one process" in message and "Close that connection" in message
    holder.release()
    loaded.run()  # converges once the file is free


def test_the_notebook_waits_while_the_pipeline_writes(
    reading: Loaded, kernels: KernelSpecManager, hold: Callable[[Path, str], Holder]
) -> None:
    client = notebook_client(OVERVIEW, kernels)
    cells = client.nb.cells
    [snapshot] = [i for i, c in enumerate(cells) if "snapshot" in c.metadata.get("tags", [])]
    writer = hold(reading.database, "read_write")  # what the pipeline holds while it loads

    async def scenario() -> None:
        async with client.async_setup_kernel():
            for index in range(snapshot):
                await client.async_execute_cell(cells[index], index)
            running = asyncio.ensure_future(client.async_execute_cell(cells[snapshot], snapshot))
            # Release the file only once the notebook has said it is waiting for it.
            for _ in range(600):
                if "waiting" in output_text([cells[snapshot]]) or running.done():
                    break
                await asyncio.sleep(0.05)
            assert not running.done(), output_text([cells[snapshot]])
            writer.release()
            await running

    asyncio.run(scenario())
    text = output_text([cells[snapshot]])
    assert "being written by another process" in text and "released the file" in text
