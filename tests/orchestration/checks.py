"""Checks both orchestrators' tests make on the current-state tables, and a Connect platform
to make them on."""

from __future__ import annotations

import stripe

from stripe_emulator.account import AccountState
from stripe_emulator.server import EmulatorServer
from tests.support import Warehouse

KINDS = {"coupons": "coupon", "products": "product", "promotion_codes": "promotion_code"}
# A coupon id two connected accounts both use: the tables keep them apart by account_id.
SHARED_COUPON = "SHARED10"


def assert_matches_stripe(warehouse: Warehouse, stripe_emulator: EmulatorServer) -> None:
    """Invariant 1: one row per object; live ones not deleted, flagged ones deleted in Stripe."""
    account = stripe_emulator.account
    for table, kind in KINDS.items():
        rows = warehouse.rows(f"SELECT id, is_deleted FROM stripe.{table}")
        assert len(rows) == len({row["id"] for row in rows}), f"duplicates in stripe.{table}"
        live = {row["id"] for row in rows if row["is_deleted"] is False}
        assert live == set(account.state(kind)), table
        flagged = {row["id"] for row in rows if row["is_deleted"] is True}
        assert flagged <= account.deleted_ids(kind), table
        assert all(row["is_deleted"] in (True, False) for row in rows), table


def connect_platform(
    stripe_emulator: EmulatorServer, client: stripe.StripeClient, connected: int
) -> list[str]:
    """The key's own account and `connected` connected accounts, each with a few coupons,
    products and promotion codes, the first two with a coupon of the same id; their ids."""
    platform = stripe_emulator.account
    platform.seed(promotion_codes=10)
    accounts = [platform.add_connected_account() for _ in range(connected)]
    for number, account in enumerate(accounts, start=2):
        account.seed(promotion_codes=10 * (1 + number % 2), seed=number)
    for account in accounts[:2]:
        client.v1.coupons.create(
            params={"id": SHARED_COUPON, "percent_off": 10, "duration": "once"},
            options={"stripe_account": account.id},
        )
    return [platform.id, *(account.id for account in accounts)]


def emulated(stripe_emulator: EmulatorServer, account_id: str) -> AccountState:
    """The emulator's state of one account: the platform's own, or a connected one."""
    platform = stripe_emulator.account
    if account_id == platform.id:
        return platform
    return platform.connected_account(account_id)


def assert_every_account_matches(
    warehouse: Warehouse, stripe_emulator: EmulatorServer, accounts: list[str]
) -> None:
    """Invariant 1 per account: the tables hold each account's objects under its account_id."""
    for table, kind in KINDS.items():
        rows = warehouse.rows(f"SELECT account_id, id, is_deleted FROM stripe.{table}")
        keys = [(row["account_id"], row["id"]) for row in rows]
        assert len(keys) == len(set(keys)), f"duplicates in stripe.{table}"
        assert {account for account, _ in keys} <= set(accounts), table
        for account_id in accounts:
            account = emulated(stripe_emulator, account_id)
            mine = [row for row in rows if row["account_id"] == account_id]
            live = {row["id"] for row in mine if row["is_deleted"] is False}
            assert live == set(account.state(kind)), (table, account_id)
            flagged = {row["id"] for row in mine if row["is_deleted"] is True}
            assert flagged <= account.deleted_ids(kind), (table, account_id)
