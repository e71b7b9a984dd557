"""Cases the model test (tests/model) found, kept small: real runs against the emulator, on
DuckDB and PostgreSQL."""

from __future__ import annotations

from typing import Any

import stripe

from stripe_emulator.server import EmulatorServer
from tests.support import Warehouse, as_json

DAY = 24 * 3600


def test_an_event_does_not_blank_the_fields_events_leave_out(
    warehouse: Warehouse, stripe_emulator: EmulatorServer, client: stripe.StripeClient
) -> None:
    """A coupon restricted to a product, renamed: the rename is one version, and at no time
    does the history say the coupon applied to nothing."""
    account, clock = stripe_emulator.account, stripe_emulator.account.clock
    clock.freeze()
    product = client.v1.products.create(params={"name": "Mug"})
    params: Any = {
        "id": "MUGS",
        "name": "A",
        "amount_off": 500,
        "currency": "usd",
        "duration": "once",
        "applies_to": {"products": [product.id]},
    }
    client.v1.coupons.create(params=params)
    warehouse.run()
    account.advance_clock(60)
    client.v1.coupons.update("MUGS", params={"name": "B"})
    account.advance_clock(60)
    warehouse.run()  # the event, then the coupon read again for the fields events leave out
    rows = warehouse.rows(
        "SELECT version, name, applies_to, observed_via, changed_fields "
        "FROM stripe.coupons_history WHERE id = 'MUGS' ORDER BY version"
    )
    shown = [(r["name"], as_json(r["applies_to"]), as_json(r["changed_fields"])) for r in rows]
    assert shown == [
        ("A", {"products": [product.id]}, None),
        ("B", {"products": [product.id]}, ["name"]),
    ]


def test_a_deadline_passed_shows_whichever_account_a_run_read(
    warehouse: Warehouse, stripe_emulator: EmulatorServer, client: stripe.StripeClient
) -> None:
    """A coupon of the key's own account whose redeem_by passes while only a connected account
    is read: Stripe's clock is one for every account, so its row says expired as of that run
    (every other column stays as its account's last run left it)."""
    platform = stripe_emulator.account
    other = platform.add_connected_account().id
    redeem_by = int(platform.clock.now()) + 19 * DAY
    params: Any = {"id": "C1", "percent_off": 10, "duration": "once", "redeem_by": redeem_by}
    client.v1.coupons.create(params=params)
    warehouse.run(accounts="all")
    before = warehouse.current("coupons")["C1"]
    platform.advance_clock(31 * DAY)
    warehouse.run(accounts=(other,))
    after = warehouse.current("coupons")["C1"]
    assert before["valid"] is True and before["status"] == "valid"
    assert (after["valid"], after["is_expired"], after["status"]) == (False, True, "expired")
    assert after["synced_at"] == before["synced_at"]
