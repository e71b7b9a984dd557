"""The README's settings, set on the command (a subprocess) as users set them, seen to work."""

# Each test sets one setting the way the README says (mostly an environment variable) and
# observes its effect from outside the command: what the emulator was asked, its 429 and fault
# counters, the files and tables written. Renaming the variable in a test makes it fail.

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import fasteners
import psycopg2
import pytest

from stripe_emulator.collection import RequestContext
from stripe_emulator.server import EmulatorServer
from tests.conftest import create_database
from tests.support import run_command

ROOT = Path(__file__).resolve().parents[2]
PINNED_VERSION = "2026-10-28.endive"  # the README's default api_version
OTHER_VERSION = "2024-06-20"
LISTED = ("coupons", "products", "promotion_codes")


@dataclass(frozen=True)
class Call:
    """One API request the emulator served: which, with what parameters, at which version."""

    operation: str  # e.g. "list coupons"
    params: dict[str, Any]
    version: str  # the Stripe-Version it was served at


@dataclass
class Served:
    """What reached the emulator: requests past auth and rate limits, and the keys they bore."""

    calls: list[Call] = field(default_factory=list)
    keys: set[str | None] = field(default_factory=set)

    def lists(self, collection: str) -> list[Call]:
        """The list requests of one collection (`coupons`, `events`, ...)."""
        return [c for c in self.calls if c.operation == f"list {collection}"]


@pytest.fixture
def served(stripe_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Served:
    """A record of every API request the emulator answers (its Python API has only counts)."""
    account = stripe_emulator.account
    seen = Served()
    handle, check = account.handle, account.keys.check

    def recording(
        collection: str,
        operation: str,
        object_id: str | None,
        params: Mapping[str, Any],
        ctx: RequestContext,
    ) -> dict[str, Any]:
        seen.calls.append(Call(f"{operation} {collection}", dict(params), ctx.api_version))
        return handle(collection, operation, object_id, params, ctx)

    def checking(key: str | None, *, write: bool, resource: str) -> None:
        seen.keys.add(key)
        check(key, write=write, resource=resource)

    monkeypatch.setattr(account, "handle", recording)
    monkeypatch.setattr(account.keys, "check", checking)
    return seen


@pytest.fixture
def seeded(stripe_emulator: EmulatorServer) -> EmulatorServer:
    """A small account: a run makes a handful of requests."""
    stripe_emulator.account.seed(coupons=12, products=4, promotion_codes=12)
    return stripe_emulator


def duckdb_ids(database: Path, table: str) -> set[str]:
    """Ids in a current-state table of a DuckDB file the command wrote."""
    with duckdb.connect(str(database), read_only=True) as connection:
        return {row[0] for row in connection.sql(f"SELECT id FROM stripe.{table}").fetchall()}


def live_ids(emulator: EmulatorServer, kind: str) -> set[str]:
    """Ids of the live objects of a kind in the emulated account."""
    return set(emulator.account.state(kind))


# -- sources.stripe.* ------------------------------------------------------------------------------
def test_api_key_from_sources_stripe_api_key(
    seeded: EmulatorServer, served: Served, tmp_path: Path
) -> None:
    """`SOURCES__STRIPE__API_KEY` alone (no STRIPE_API_KEY): every request bears that key."""
    key = "rk_test_fromDltConfig0042"
    done = run_command(
        "--api-base",
        seeded.url,
        "--quiet",
        cwd=tmp_path,
        env={"SOURCES__STRIPE__API_KEY": key},
        key=None,
    )
    assert done.returncode == 0, done.stderr
    assert served.calls and served.keys == {key}


def test_api_base_from_sources_stripe_api_base(
    seeded: EmulatorServer, served: Served, tmp_path: Path
) -> None:
    """`SOURCES__STRIPE__API_BASE` without `--api-base`: the run reads the emulator there."""
    done = run_command("--quiet", cwd=tmp_path, env={"SOURCES__STRIPE__API_BASE": seeded.url})
    assert done.returncode == 0, done.stderr
    assert served.lists("coupons")
    assert duckdb_ids(tmp_path / "stripe_pipeline.duckdb", "coupons") == live_ids(seeded, "coupon")


def test_api_version_is_the_stripe_version_of_every_request(
    seeded: EmulatorServer, served: Served, tmp_path: Path
) -> None:
    """`SOURCES__STRIPE__API_VERSION`: requests carry it (the account's own is another)."""
    assert seeded.account.api_version == PINNED_VERSION != OTHER_VERSION
    env = {"SOURCES__STRIPE__API_VERSION": OTHER_VERSION}
    done = run_command("--api-base", seeded.url, "--quiet", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert served.lists("promotion_codes")
    assert {call.version for call in served.calls} == {OTHER_VERSION}


def test_start_date_leaves_out_objects_created_before_it(
    seeded: EmulatorServer, tmp_path: Path
) -> None:
    """`SOURCES__STRIPE__START_DATE=YYYY-MM-DD`: only objects created that day or later load."""
    created = sorted(c["created"] for c in seeded.account.state("coupon").values())
    middle = datetime.fromtimestamp(created[len(created) // 2], UTC).date()
    start = int(datetime(middle.year, middle.month, middle.day, tzinfo=UTC).timestamp())
    env = {"SOURCES__STRIPE__START_DATE": middle.isoformat()}
    done = run_command("--api-base", seeded.url, "--quiet", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    database = tmp_path / "stripe_pipeline.duckdb"
    loaded = left_out = 0
    for kind in ("coupon", "product", "promotion_code"):
        objects = seeded.account.state(kind)
        since = {i for i, o in objects.items() if o["created"] >= start}
        assert duckdb_ids(database, f"{kind}s") == since, kind
        loaded, left_out = loaded + len(since), left_out + len(objects) - len(since)
    assert loaded and left_out  # the date splits the account: the test can tell


def test_page_size_is_the_limit_of_every_listing(
    seeded: EmulatorServer, served: Served, tmp_path: Path
) -> None:
    """`SOURCES__STRIPE__PAGE_SIZE=7`: list requests ask for 7, so 12 coupons take 2+ pages."""
    done = run_command(
        "--api-base",
        seeded.url,
        "--quiet",
        cwd=tmp_path,
        env={"SOURCES__STRIPE__PAGE_SIZE": "7"},
    )
    assert done.returncode == 0, done.stderr
    listings = [call for collection in LISTED for call in served.lists(collection)]
    assert listings and {str(call.params.get("limit")) for call in listings} == {"7"}
    coupons = live_ids(seeded, "coupon")
    assert len(served.lists("coupons")) >= math.ceil(len(coupons) / 7)
    assert duckdb_ids(tmp_path / "stripe_pipeline.duckdb", "coupons") == coupons


# The emulator's limits are twice the connector's: a connector keeping to its setting is not
# refused (that takes 3 requests within one second; it sends one per 1.01 s), while one at
# its default (25 requests per second) sends the run's first 3 requests of a kind within a
# fraction of a second, and is refused. The evidence is the emulator's count of 429s, not the
# time a run takes.
RATE_SETTING, RATE_LIMIT = 1, 2


def test_max_requests_per_second_keeps_the_run_under_the_account_limit(
    seeded: EmulatorServer, served: Served, tmp_path: Path
) -> None:
    """`SOURCES__STRIPE__MAX_REQUESTS_PER_SECOND`: no 429 from an account limit twice it."""
    seeded.account.rate_limits.configure(test=RATE_LIMIT, operation=None)
    env = {"SOURCES__STRIPE__MAX_REQUESTS_PER_SECOND": str(RATE_SETTING)}
    done = run_command("--api-base", seeded.url, "--quiet", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert len(served.calls) > RATE_LIMIT  # enough requests for the default to be refused
    assert seeded.account.rate_limits.rejected() == {}


def test_max_requests_per_second_per_operation_keeps_each_operation_under_its_limit(
    seeded: EmulatorServer, served: Served, tmp_path: Path
) -> None:
    """`..._PER_OPERATION`: no 429 from a per-operation limit twice it, none account-wide."""
    seeded.account.rate_limits.configure(test=None, operation=RATE_LIMIT)
    env = {
        "SOURCES__STRIPE__PAGE_SIZE": "5",  # 12 coupons: 3 or more pages of `list coupons`
        "SOURCES__STRIPE__MAX_REQUESTS_PER_SECOND_PER_OPERATION": str(RATE_SETTING),
    }
    done = run_command("--api-base", seeded.url, "--quiet", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert len(served.lists("coupons")) > RATE_LIMIT
    assert seeded.account.rate_limits.rejected() == {}


def test_event_lag_seconds_is_how_far_behind_the_cursor_events_are_read(
    seeded: EmulatorServer, served: Served, tmp_path: Path
) -> None:
    """`SOURCES__STRIPE__EVENT_LAG_SECONDS=1234`: run 2 lists events from its cursor - 1234 s."""
    # The cursor is Stripe's clock at the first run: frozen, it is known here.
    seeded.account.clock.freeze()
    cursor = int(seeded.account.clock.now())
    env = {"SOURCES__STRIPE__EVENT_LAG_SECONDS": "1234"}
    first = run_command("--api-base", seeded.url, "--quiet", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    served.calls.clear()
    seeded.account.advance_clock(60)
    second = run_command("--api-base", seeded.url, "--quiet", cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    events = served.lists("events")
    assert events
    assert {str(call.params.get("created", {}).get("gte")) for call in events} == {
        str(cursor - 1234)
    }


def test_max_attempts_is_how_often_a_failing_request_is_tried(
    stripe_emulator: EmulatorServer, tmp_path: Path
) -> None:
    """`SOURCES__STRIPE__MAX_ATTEMPTS=2`: Stripe answering only 500s gets exactly 2 requests."""
    account = stripe_emulator.account
    account.faults.configure(error_rate=1.0)
    env = {"SOURCES__STRIPE__MAX_ATTEMPTS": "2"}
    done = run_command("--api-base", stripe_emulator.url, "--quiet", cwd=tmp_path, env=env)
    assert done.returncode == 1
    assert "after 2 attempts" in done.stderr, done.stderr
    assert account.faults.injected() == {"server_error": 2}
    assert sum(account.requests.values()) == 2


# -- destinations, dlt's working folder, the lock wait ---------------------------------------------
def account_ids(database: Path, table: str) -> set[str]:
    """The accounts a current-state table of a DuckDB file holds objects of."""
    with duckdb.connect(str(database), read_only=True) as connection:
        rows = connection.sql(f"SELECT DISTINCT account_id FROM stripe.{table}").fetchall()
    return {row[0] for row in rows}


@pytest.mark.parametrize("form", ["json", "commas", "all"])
def test_accounts_from_sources_stripe_accounts(
    seeded: EmulatorServer, tmp_path: Path, form: str
) -> None:
    """`SOURCES__STRIPE__ACCOUNTS` as a JSON list, comma-separated ids, or `all`. The key's
    own id may be listed: it is read without `Stripe-Account` (the emulator's strict reading
    refuses a platform's own id in the header; Stripe does not say)."""
    shops = [seeded.account.add_connected_account() for _ in range(3)]
    for shop in shops:
        shop.seed(coupons=2, products=1, promotion_codes=2)
    wanted = [seeded.account.id if form == "json" else shops[0].id, shops[1].id]
    value = {"json": f'["{wanted[0]}", "{wanted[1]}"]', "commas": ",".join(wanted)}
    done = run_command(
        "--api-base",
        seeded.url,
        "--quiet",
        cwd=tmp_path,
        env={"SOURCES__STRIPE__ACCOUNTS": value.get(form, "all")},
    )
    assert done.returncode == 0, done.stderr
    everyone = {seeded.account.id, *(shop.id for shop in shops)}
    expected = everyone if form == "all" else set(wanted)
    assert account_ids(tmp_path / "stripe_pipeline.duckdb", "coupons") == expected


@pytest.mark.parametrize("budget", ["platform", "per_account"])
def test_connect_rate_budget_is_whose_limits_connected_accounts_share(
    stripe_emulator: EmulatorServer, tmp_path: Path, budget: str
) -> None:
    """`SOURCES__STRIPE__CONNECT_RATE_BUDGET`: under the emulator's strict reading (one budget
    for the platform) `platform` is never answered 429; `per_account` paces each account alone."""
    account = stripe_emulator.account
    account.rate_limits.configure(test=8, operation=8)
    for _ in range(6):
        account.add_connected_account().seed(coupons=3, products=1, promotion_codes=3)
    done = run_command(
        "--api-base",
        stripe_emulator.url,
        "--quiet",
        "--all-accounts",
        cwd=tmp_path,
        env={
            "SOURCES__STRIPE__CONNECT_RATE_BUDGET": budget,
            "SOURCES__STRIPE__MAX_REQUESTS_PER_SECOND": "8",
            "SOURCES__STRIPE__MAX_REQUESTS_PER_SECOND_PER_OPERATION": "8",
        },
    )
    assert done.returncode == 0, done.stderr
    rejected = sum(account.rate_limits.rejected().values())
    if budget == "platform":
        assert rejected == 0
    else:
        assert rejected > 0  # seven accounts at 8/s each against one shared 8/s: retried


def test_duckdb_credentials_name_the_file_loaded(seeded: EmulatorServer, tmp_path: Path) -> None:
    """`DESTINATION__DUCKDB__CREDENTIALS`: that file holds the tables; none in the folder."""
    (tmp_path / "warehouse").mkdir()
    database = tmp_path / "warehouse" / "promotions.duckdb"
    env = {"DESTINATION__DUCKDB__CREDENTIALS": str(database)}
    done = run_command("--api-base", seeded.url, "--quiet", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert duckdb_ids(database, "coupons") == live_ids(seeded, "coupon")
    assert not (tmp_path / "stripe_pipeline.duckdb").exists()


def test_dlt_data_dir_holds_the_working_folder_and_the_lock(
    seeded: EmulatorServer, tmp_path: Path
) -> None:
    """`DLT_DATA_DIR`: dlt's working folder (state) and the run lock are there, nowhere else."""
    data_dir, home = tmp_path / "elsewhere", tmp_path / "home"
    home.mkdir()
    env = {"DLT_DATA_DIR": str(data_dir), "HOME": str(home)}
    done = run_command("--api-base", seeded.url, "--quiet", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    pipelines = data_dir / "pipelines"
    assert (pipelines / "stripe_pipeline" / "state.json").is_file()
    assert (pipelines / "stripe_pipeline.lock").is_file()
    assert not (home / ".dlt").exists() and not (tmp_path / "dlt").exists()


def test_postgres_destination_with_its_credentials(
    seeded: EmulatorServer, postgres_socket: str, tmp_path: Path
) -> None:
    """`--destination postgres` with `DESTINATION__POSTGRES__CREDENTIALS`: tables land there."""
    credentials = create_database(postgres_socket)
    env = {"DESTINATION__POSTGRES__CREDENTIALS": credentials}
    done = run_command(
        "--destination", "postgres", "--api-base", seeded.url, "--quiet", cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    database = urlsplit(credentials).path.lstrip("/")
    connection = psycopg2.connect(dbname=database, user="postgres", host=postgres_socket)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM stripe.coupons")
            assert {row[0] for row in cursor.fetchall()} == live_ids(seeded, "coupon")
    finally:
        connection.close()
    assert not list(tmp_path.glob("*.duckdb"))


@pytest.fixture
def held_lock(tmp_path: Path) -> Iterator[Path]:
    """The pipeline's lock file (beside dlt's working folder), held by this process."""
    pipelines = tmp_path / "dlt" / "pipelines"
    pipelines.mkdir(parents=True)
    lock = fasteners.InterProcessLock(str(pipelines / "stripe_pipeline.lock"))
    assert lock.acquire(blocking=False)
    try:
        yield pipelines / "stripe_pipeline.lock"
    finally:
        lock.release()


def test_lock_wait_is_how_long_a_second_run_waits(
    stripe_emulator: EmulatorServer, held_lock: Path, tmp_path: Path
) -> None:
    """`STRIPE_PIPELINE_LOCK_WAIT=0.5`: a run finding the lock held waits 0.5 s, not 5."""
    env = {"STRIPE_PIPELINE_LOCK_WAIT": "0.5"}
    done = run_command("--api-base", stripe_emulator.url, cwd=tmp_path, env=env)
    assert done.returncode == 1
    text = " ".join((done.stdout + done.stderr).split())
    assert "waiting up to 0.5 s" in text and "waited 0.5 s" in text, text
    assert sum(stripe_emulator.account.requests.values()) == 0  # refused before asking Stripe
