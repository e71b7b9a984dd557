"""Schema drift: fields Stripe adds, a field whose type changes, another API version.

The emulator renders extra fields on demand (`Account.set_extra_fields`); no code changes here.
"""

from __future__ import annotations

import json

import pytest
import stripe

from stripe_emulator.server import EmulatorServer
from tests.model.model import OLD_VERSION
from tests.reliability.harness import assert_converged
from tests.support import Warehouse, as_json

ADDED = {"loyalty_tier": 3, "score": 1.5, "rules": {"stackable": False, "limit": 2}}


def columns(warehouse: Warehouse, schema: str, table: str) -> dict[str, str]:
    """Column names and types of a table."""
    rows = warehouse.rows(
        "SELECT column_name, data_type FROM information_schema.columns "
        f"WHERE table_schema = '{schema}' AND table_name = '{table}'"
    )
    return {row["column_name"]: str(row["data_type"]).upper() for row in rows}


def test_fields_stripe_adds_become_columns_raw_and_current(
    warehouse: Warehouse, stripe_emulator: EmulatorServer, client: stripe.StripeClient
) -> None:
    account = stripe_emulator.account
    account.seed(coupons=6, products=4, promotion_codes=6)
    warehouse.run()
    existing = sorted(account.state("coupon"))[0]

    account.set_extra_fields("coupon", ADDED)
    account.set_extra_fields("product", {"carbon_grams": 120})
    client.v1.coupons.create(params={"id": "DRIFT", "percent_off": 10})  # a new object
    client.v1.coupons.update(existing, params={"name": "Updated"})  # an update (its event)
    product = client.v1.products.create(params={"name": "Mug"})
    warehouse.run()

    for schema in ("stripe_raw", "stripe"):
        coupon_columns = columns(warehouse, schema, "coupons")
        assert {"loyalty_tier", "score", "rules"} <= set(coupon_columns), (schema, coupon_columns)
        assert "carbon_grams" in columns(warehouse, schema, "products")
    coupons = warehouse.current("coupons")
    for coupon_id in ("DRIFT", existing):
        row = coupons[coupon_id]
        # The values are kept (as numbers, or as text: the source's choice for new fields).
        assert str(row["loyalty_tier"]) == "3" and float(row["score"]) == 1.5
        assert as_json(row["rules"]) == ADDED["rules"]  # a nested map stays JSON
    assert str(warehouse.current("products")[product.id]["carbon_grams"]) == "120"
    # Objects not read since keep NULL, and everything else still matches Stripe.
    untouched = sorted(set(coupons) - {"DRIFT", existing})[0]
    assert coupons[untouched]["loyalty_tier"] is None
    account.set_extra_fields("coupon", {})
    account.set_extra_fields("product", {})
    assert_converged(warehouse, account)


def test_a_field_whose_type_changes_does_not_fail_the_load(
    duckdb_warehouse: Warehouse, stripe_emulator: EmulatorServer, client: stripe.StripeClient
) -> None:
    account = stripe_emulator.account
    account.set_extra_fields("coupon", {"loyalty_tier": 3})
    client.v1.coupons.create(params={"id": "AS_INT", "percent_off": 10})
    duckdb_warehouse.run()
    account.set_extra_fields("coupon", {"loyalty_tier": "gold"})
    client.v1.coupons.create(params={"id": "AS_TEXT", "percent_off": 10})
    duckdb_warehouse.run()  # a new field is text, so 'gold' after 3 loads

    rows = duckdb_warehouse.rows("SELECT * FROM stripe_raw.coupons WHERE id = 'AS_TEXT'")
    kept = [v for k, v in rows[0].items() if k.startswith("loyalty_tier") and v is not None]
    assert kept and "gold" in json.dumps(kept, default=str)
    assert_converged(duckdb_warehouse, account)


def test_another_api_version_keeps_rows_canonical(
    duckdb_warehouse: Warehouse,
    stripe_emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = stripe_emulator.account
    account.seed(coupons=6, products=3, promotion_codes=10)
    monkeypatch.setenv("SOURCES__STRIPE__API_VERSION", OLD_VERSION)
    duckdb_warehouse.run()
    versions = duckdb_warehouse.rows("SELECT DISTINCT _api_version FROM stripe_raw.promotion_codes")
    assert [row["_api_version"] for row in versions] == [OLD_VERSION]
    codes = duckdb_warehouse.current("promotion_codes")
    assert codes and all(row["coupon_id"] for row in codes.values())
    assert {row["promotion_type"] for row in codes.values()} == {"coupon"}
    assert_converged(duckdb_warehouse, account)  # compared with today's rendering

    # Back to the pinned version: the same objects, the same rows, nothing duplicated.
    monkeypatch.delenv("SOURCES__STRIPE__API_VERSION")
    account.redeem(sorted(i for i, c in account.state("promotion_code").items() if c["active"])[0])
    duckdb_warehouse.run()
    assert_converged(duckdb_warehouse, account)
    assert duckdb_warehouse.current("promotion_codes").keys() == codes.keys()
