"""Checks both orchestrators' tests make on the current-state tables."""

from __future__ import annotations

from stripe_emulator.server import EmulatorServer
from tests.support import Warehouse

KINDS = {"coupons": "coupon", "products": "product", "promotion_codes": "promotion_code"}


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
