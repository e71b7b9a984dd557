"""`stripe_pipeline.py demo`: the whole story against the emulator, in under a minute.

Seeds an emulated account, loads it, changes objects the ways that trip other connectors up
(metadata edits, an archive, a deactivation, redemptions, deletions), loads again and shows
the current-state tables, deleted rows included.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dlt
import stripe
from rich.console import Console
from rich.table import Table

from stripe_emulator import serve
from stripe_promotions import SyncRequest

from .config import PipelineConfig, make_pipeline
from .runner import run_sync
from .summary import summary

DEMO_KEY = "sk_test_demoAccountKey0000"
DEMO_PIPELINE = "stripe_demo"
QUERIES = {
    "coupons": "SELECT id, name, metadata, discount_type, amount_off_major, currency, status, "
    "is_deleted, deleted_at FROM stripe.coupons ORDER BY is_deleted DESC, synced_at DESC LIMIT 5",
    "products": "SELECT id, name, active, status, is_deleted, deleted_at FROM stripe.products "
    "ORDER BY is_deleted DESC, synced_at DESC LIMIT 5",
    "promotion_codes": "SELECT code, coupon_id, active, times_redeemed, status, is_redeemable "
    "FROM stripe.promotion_codes ORDER BY synced_at DESC LIMIT 5",
}


def run_demo(settings: PipelineConfig, console: Console | None = None) -> None:
    """Seed, load, change, load again, show."""
    # Not a terminal (a log, CI): wide enough for the tables instead of rich's 80 columns.
    out = console or Console(width=None if sys.stdout.isatty() else 132)
    with serve() as emulator:
        counts = emulator.account.seed(preset="demo")
        demo = PipelineConfig(
            destination=settings.destination,
            api_base=emulator.url,
            pipeline_name=DEMO_PIPELINE,
            pipelines_dir=settings.pipelines_dir,
            duckdb_file=settings.duckdb_file
            or (f"{DEMO_PIPELINE}.duckdb" if settings.destination == "duckdb" else None),
            progress=settings.progress,
            source_options={"api_key": DEMO_KEY},
        )
        fresh_start(demo)
        out.rule("1. Load a seeded Stripe account (the bundled emulator)")
        out.print(
            f"Emulator at {emulator.url}: {counts['coupons']} coupons, {counts['products']} "
            f"products, {counts['promotion_codes']} promotion codes, some archived, "
            "deactivated, redeemed, expired and deleted already."
        )
        out.print(summary(run_sync(SyncRequest(), demo)), highlight=False, soft_wrap=True)

        out.rule("2. Change things in Stripe")
        client = stripe.StripeClient(DEMO_KEY, base_addresses={"api": emulator.url})
        for change in make_changes(client, emulator.account):
            out.print(f"  • {change}", highlight=False)

        out.rule("3. Load again: updates and deletions arrive through Stripe's events")
        out.print(summary(run_sync(SyncRequest(), demo)), highlight=False, soft_wrap=True)

        out.rule("4. The current-state tables (schema stripe)")
        show_tables(make_pipeline(demo), out)


def fresh_start(settings: PipelineConfig) -> None:
    """Forget an earlier demo: its pipeline state and its DuckDB file."""
    pipeline = make_pipeline(settings)
    pipeline.drop()
    if settings.duckdb_file:
        for suffix in ("", ".wal"):
            Path(settings.duckdb_file + suffix).unlink(missing_ok=True)
    working = Path(pipeline.working_dir)
    if working.exists():
        shutil.rmtree(working, ignore_errors=True)


def make_changes(client: stripe.StripeClient, account: Any) -> list[str]:
    """Updates, an archive, a deactivation, redemptions, deletions and new objects."""
    coupons = client.v1.coupons.list(params={"limit": 100}).data
    products = client.v1.products.list(params={"limit": 100, "active": True}).data
    codes = client.v1.promotion_codes.list(params={"limit": 100, "active": True}).data
    changes: list[tuple[str, Callable[[], object]]] = [
        (
            f"coupon {coupons[0].id}: metadata order_id=6735 (as in Stripe's docs)",
            lambda: client.v1.coupons.update(
                coupons[0].id, params={"metadata": {"order_id": "6735"}}
            ),
        ),
        (
            f"product {products[0].name!r}: archived (active=false)",
            lambda: client.v1.products.update(products[0].id, params={"active": False}),
        ),
        (
            f"promotion code {codes[0].code}: deactivated",
            lambda: client.v1.promotion_codes.update(codes[0].id, params={"active": False}),
        ),
        (
            f"promotion code {codes[1].code}: redeemed twice",
            lambda: [account.redeem(codes[1].id) for _ in range(2)],
        ),
        (f"coupon {coupons[1].id}: deleted", lambda: client.v1.coupons.delete(coupons[1].id)),
    ]
    deletable = next((p for p in products[1:] if p.default_price is None), None)
    if deletable is not None:
        changes.append(
            (
                f"product {deletable.name!r}: deleted",
                lambda: client.v1.products.delete(deletable.id),
            )
        )
    new_coupon: dict[str, Any] = {}
    changes.append(
        (
            "new coupon WINTER15 (15% off) with promotion code WINTER15",
            lambda: new_coupon.update(
                coupon=client.v1.coupons.create(
                    params={
                        "id": "WINTER15",
                        "name": "15% off",
                        "percent_off": 15,
                        "duration": "once",
                    }
                ),
                code=client.v1.promotion_codes.create(
                    params={
                        "code": "WINTER15",
                        "promotion": {"type": "coupon", "coupon": "WINTER15"},
                    }
                ),
            ),
        )
    )
    done = []
    for description, change in changes:
        change()
        done.append(description)
    return done


def show_tables(pipeline: dlt.Pipeline, out: Console) -> None:
    """A few rows of each current-state table, deleted ones first."""
    with pipeline.sql_client() as client:
        for name, query in QUERIES.items():
            with client.execute_query(query) as cursor:
                columns = [c[0] for c in cursor.description]
                rows = cursor.fetchall()
            table = Table(title=f"stripe.{name}", title_justify="left")
            for column in columns:
                table.add_column(column)
            for row in rows:
                table.add_row(
                    *(cell(column, value) for column, value in zip(columns, row, strict=True))
                )
            out.print(table)


def cell(column: str, value: Any) -> str:
    """A value as the demo's tables show it; `metadata` compactly as `key=value, ...`."""
    if value is None:
        return ""
    if column == "metadata":
        # DuckDB hands JSON back as text, PostgreSQL as a dict.
        pairs = json.loads(value) if isinstance(value, str) else value
        if isinstance(pairs, dict):
            return ", ".join(f"{key}={item}" for key, item in sorted(pairs.items()))
    return str(value)
