"""Stripe Connect runs against the emulator's platform: every account's objects in one set of
tables keyed by (account_id, id), state per account, and an account lost midway that fails
alone (the others load; the command exits 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import stripe

from stripe_emulator.server import EmulatorServer
from stripe_promotions import SyncRequest
from stripe_promotions_pipeline import coupons
from stripe_promotions_pipeline.config import PipelineConfig
from stripe_promotions_pipeline.errors import RunError
from tests.support import TEST_KEY, Warehouse, run_command

CONNECTED = 20


def seed_account(client: stripe.StripeClient, account: str | None, n: int) -> None:
    """A coupon SHARED (the same id in every account), a product and a code for it."""
    options: Any = {"stripe_account": account} if account else {}
    client.v1.coupons.create(params={"id": "SHARED", "percent_off": n + 1}, options=options)
    client.v1.products.create(params={"name": f"Shop {n}"}, options=options)
    client.v1.promotion_codes.create(
        params={"code": f"SHOP{n}", "promotion": {"type": "coupon", "coupon": "SHARED"}},
        options=options,
    )


@pytest.fixture
def platform(stripe_emulator: EmulatorServer, client: stripe.StripeClient) -> list[str]:
    """The platform's own account and CONNECTED connected ones, each with its objects; the
    ids of the connected ones."""
    seed_account(client, None, 99)
    connected = []
    for n in range(CONNECTED):
        account = stripe_emulator.account.add_connected_account().id
        seed_account(client, account, n)
        connected.append(account)
    return connected


def own_id(stripe_emulator: EmulatorServer) -> str:
    return str(stripe_emulator.account.id)


def test_all_accounts_load_into_one_set_of_tables(
    warehouse: Warehouse,
    stripe_emulator: EmulatorServer,
    client: stripe.StripeClient,
    platform: list[str],
) -> None:
    """Every account's objects, the same id in two accounts as two rows; an account lost
    midway fails alone and resumes once it is back; a quiet run costs 4 requests an account."""
    account = stripe_emulator.account
    lost = platform[7]
    account.disconnect_connected_account_after(lost, 2)  # it answers its first two requests
    first = warehouse.run(accounts="all")

    assert first.partly_failed and set(first.stats.failed_accounts) == {lost}
    assert (
        "account_invalid" in first.stats.failed_accounts[lost]
        or "403" in (first.stats.failed_accounts[lost])
    )
    shared = warehouse.rows(
        "SELECT account_id, percent_off FROM stripe.coupons WHERE id = 'SHARED' "
        "ORDER BY percent_off"
    )
    loaded = [own_id(stripe_emulator), *(a for a in platform if a != lost)]
    assert {row["account_id"] for row in shared} >= set(loaded)
    codes = warehouse.rows("SELECT account_id, code, status FROM stripe.promotion_codes")
    by_account = {row["account_id"]: row for row in codes}
    assert {by_account[a]["code"] for a in loaded} == {
        f"SHOP{n}" for n, a in [(99, own_id(stripe_emulator)), *enumerate(platform)] if a != lost
    }
    assert all(by_account[a]["status"] == "redeemable" for a in loaded)
    assert (
        warehouse.rows("SELECT COUNT(*) AS n FROM stripe.coupons WHERE account_id IS NULL")[0]["n"]
        == 0
    )

    # Disconnected, it is no longer listed: the next run reads the others, each quietly (its
    # events, then the three created listings), and keeps what it loaded of the lost one.
    account.account_requests.clear()
    before = warehouse.rows(
        f"SELECT COUNT(*) AS n FROM stripe_raw.coupons WHERE account_id = '{lost}'"
    )
    second = warehouse.run(accounts="all")
    assert not second.partly_failed and len(second.stats.accounts) == CONNECTED
    assert account.account_requests[lost] == 0
    account.account_requests.clear()
    warehouse.run(accounts="all")  # the first run's events are behind every cursor now
    assert {account.account_requests[a] for a in platform if a != lost} == {4}
    after = warehouse.rows(
        f"SELECT COUNT(*) AS n FROM stripe_raw.coupons WHERE account_id = '{lost}'"
    )
    assert after == before


def test_state_is_per_account_and_a_new_account_backfills_alone(
    duckdb_warehouse: Warehouse,
    stripe_emulator: EmulatorServer,
    client: stripe.StripeClient,
    platform: list[str],
) -> None:
    """Listing accounts by id: an account added to the list later backfills without the
    others being read again; changes in one account reach only its rows."""
    first, later = platform[:3], platform[3]
    duckdb_warehouse.run(accounts=tuple(first))
    duckdb_warehouse.run(accounts=tuple(first))  # past the first run's own events
    client.v1.coupons.update(
        "SHARED", params={"metadata": {"tier": "gold"}}, options={"stripe_account": first[1]}
    )
    stripe_emulator.account.account_requests.clear()
    duckdb_warehouse.run(accounts=(*first, later))
    requests = stripe_emulator.account.account_requests
    assert requests[first[0]] == requests[first[2]] == 4
    assert requests[first[1]] == 5  # and a re-read of the changed coupon (applies_to)
    assert requests[later] == 4  # its first: the clock, then its three listings from the start
    tiers = {
        row["account_id"]: row["metadata"]
        for row in duckdb_warehouse.rows("SELECT account_id, metadata FROM stripe.coupons")
    }
    assert "gold" in str(tiers[first[1]]) and "gold" not in str(tiers[first[0]])
    assert later in tiers and own_id(stripe_emulator) not in tiers


def test_the_verbs_act_on_one_account(
    duckdb_warehouse: Warehouse,
    stripe_emulator: EmulatorServer,
    client: stripe.StripeClient,
    platform: list[str],
) -> None:
    """sync_by_ids, soft_delete and sync_all take `account`; soft-deleting SHARED in one
    account leaves the same id in the others alone; a verb refuses several accounts."""
    shop, other = platform[0], platform[1]
    settings = duckdb_warehouse.settings
    options: dict[str, Any] = {
        "api_base": settings.api_base,
        "pipelines_dir": settings.pipelines_dir,
        "duckdb_file": settings.duckdb_file,
    }
    coupons.sync_all(account="all", **options)
    coupons.soft_delete("SHARED", reason="retired", account=shop, **options)
    deleted = {
        row["account_id"]: row["is_deleted"]
        for row in duckdb_warehouse.rows("SELECT account_id, is_deleted FROM stripe.coupons")
    }
    assert deleted[shop] is True and deleted[other] is False
    stripe_emulator.account.clock.advance(2)  # a deletion wins its own second
    client.v1.coupons.update("SHARED", params={"name": "Back"}, options={"stripe_account": shop})
    coupons.sync_by_ids(["SHARED"], account=shop, **options)
    row = duckdb_warehouse.rows(
        f"SELECT name, is_deleted FROM stripe.coupons WHERE account_id = '{shop}'"
    )[0]
    assert row == {"name": "Back", "is_deleted": False}
    with pytest.raises(RunError, match="one account"):
        coupons.sync_by_ids(["SHARED"], account="all", **options)


def test_a_single_account_user_sees_only_the_new_column(
    duckdb_warehouse: Warehouse, stripe_emulator: EmulatorServer, client: stripe.StripeClient
) -> None:
    """Without accounts: rows carry the key's own account id, and a quiet run costs the same
    4 requests as before accounts (the own id is asked once, then remembered)."""
    seed_account(client, None, 1)
    duckdb_warehouse.run()
    assert stripe_emulator.account.requests["GET /v1/account"] == 1
    rows = duckdb_warehouse.rows("SELECT account_id, COUNT(*) AS n FROM stripe.coupons GROUP BY 1")
    assert rows == [{"account_id": own_id(stripe_emulator), "n": 1}]
    duckdb_warehouse.run()
    stripe_emulator.account.requests.clear()
    duckdb_warehouse.run()
    assert sum(stripe_emulator.account.requests.values()) == 4


def test_the_command_with_all_accounts_exits_3_when_one_fails(
    isolated: Path, stripe_emulator: EmulatorServer, platform: list[str]
) -> None:
    """`--all-accounts`: the summary names the failed account and why; exit code 3."""
    lost = platform[0]
    stripe_emulator.account.disconnect_connected_account_after(lost, 1)
    done = run_command("--api-base", stripe_emulator.url, "--all-accounts", "--quiet", cwd=isolated)
    assert done.returncode == 3, done.stderr
    assert f"{lost}:" in done.stdout and "1 of 21 accounts" in done.stdout
    assert TEST_KEY not in done.stdout + done.stderr
    both = run_command(
        "--api-base", stripe_emulator.url, "--all-accounts", "--account", lost, cwd=isolated
    )
    assert both.returncode == 1 and "not both" in both.stderr
    several = run_command(
        "--api-base",
        stripe_emulator.url,
        "--account",
        platform[1],
        "--account",
        platform[2],
        "sync-ids",
        "--type",
        "coupon",
        "SHARED",
        cwd=isolated,
    )
    assert several.returncode == 1 and "one account" in several.stderr


def test_a_malformed_account_id_is_refused_before_any_request(
    duckdb_warehouse: Warehouse, stripe_emulator: EmulatorServer
) -> None:
    """`sources.stripe.accounts` naming something that is not an account id: a clear error."""
    stripe_emulator.account.requests.clear()
    with pytest.raises(RunError, match="not a Stripe account id"):
        duckdb_warehouse.run(accounts=("shop_1",))
    assert sum(stripe_emulator.account.requests.values()) == 0


def test_for_account_gives_each_account_its_own_pipeline_and_staging() -> None:
    """A fan-out's per-account config: own dlt pipeline and staging dataset, no transforms."""
    config = PipelineConfig().for_account("acct_1Shop")
    assert config.pipeline_name == "stripe_pipeline__acct_1Shop"
    assert config.staging_dataset is not None
    assert config.staging_dataset.startswith("stripe_raw_staging_acct_1shop_")
    other = PipelineConfig().for_account("acct_1SHop").staging_dataset
    assert other != config.staging_dataset  # ids that differ by case alone stay apart
    assert config.accounts == ("acct_1Shop",) and not config.transform
    with pytest.raises(Exception, match="not a Stripe account id"):
        PipelineConfig().for_account("shop")
    assert SyncRequest().mode == "incremental"


def test_a_connected_accounts_saved_webhook_loads_only_into_its_account(
    duckdb_warehouse: Warehouse,
    stripe_emulator: EmulatorServer,
    client: stripe.StripeClient,
    platform: list[str],
) -> None:
    """A saved event carries its `account`: loaded into another account, the batch is refused
    whole; with that account, it lands there."""
    shop = platform[0]
    client.v1.coupons.create(
        params={"id": "SHOPONLY", "percent_off": 5}, options={"stripe_account": shop}
    )
    events = client.v1.events.list(
        params={"type": "coupon.created"}, options={"stripe_account": shop}
    )
    saved = next(e for e in events.data if e.data.object["id"] == "SHOPONLY").to_dict()
    settings = duckdb_warehouse.settings
    options: dict[str, Any] = {
        "api_base": settings.api_base,
        "pipelines_dir": settings.pipelines_dir,
        "duckdb_file": settings.duckdb_file,
    }
    with pytest.raises(RunError, match="events of another account"):
        coupons.sync_batch([saved], **options)
    coupons.sync_batch([saved], account=shop, **options)
    rows = duckdb_warehouse.rows("SELECT account_id FROM stripe.coupons WHERE id = 'SHOPONLY'")
    assert rows == [{"account_id": shop}]
