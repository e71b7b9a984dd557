"""Lists of all four kinds: order, limit, cursors, created filters, has_more, url, expand."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from stripe_emulator.server import EmulatorServer
from tests.emulator.emulator_support import assert_stripe_error, control, ids, plain, raw

KINDS = ["coupons", "products", "promotion_codes", "events"]


class Maker:
    """Creates objects of one kind through the SDK; returns their ids oldest first.

    Creating is a test's setup, so it is not rate-limited (nor counted): the lists are.
    """

    def __init__(self, client: stripe.StripeClient, server: EmulatorServer, kind: str) -> None:
        self.client = client
        self.account = server.account
        self.kind = kind
        self.serial = 0
        if kind == "promotion_codes":
            with self.account.rate_limits.paused():
                client.v1.coupons.create(params={"id": "BASE", "percent_off": 10})

    def one(self) -> str:
        self.serial += 1
        n = self.serial
        if self.kind == "products":
            return self.client.v1.products.create(params={"name": f"P{n}"}).id
        if self.kind == "promotion_codes":
            return self.client.v1.promotion_codes.create(
                params={"promotion": {"type": "coupon", "coupon": "BASE"}, "code": f"CODE{n}"}
            ).id
        coupon = self.client.v1.coupons.create(params={"id": f"C{n}", "percent_off": 5})
        if self.kind == "coupons":
            return coupon.id
        records = self.account.events.records.values()
        return next(r.id for r in records if r.data["object"]["id"] == coupon.id)

    def many(self, count: int, *, step: float = 0) -> list[str]:
        made = []
        with self.account.rate_limits.paused():
            for _ in range(count):
                made.append(self.one())
                if step:
                    self.account.advance_clock(step)
        return made

    def list(self, **params: Any) -> Any:
        return getattr(self.client.v1, self.kind).list(params=params)


@pytest.fixture(params=KINDS)
def maker(
    request: pytest.FixtureRequest, client: stripe.StripeClient, stripe_emulator: EmulatorServer
) -> Maker:
    return Maker(client, stripe_emulator, str(request.param))


def test_newest_first_and_stable_within_one_second(
    maker: Maker, stripe_emulator: EmulatorServer
) -> None:
    stripe_emulator.account.clock.freeze()
    made = maker.many(7)
    newest_first = list(reversed(made))
    page = maker.list()
    assert ids(page.data) == newest_first
    assert len({item["created"] for item in page.data}) == 1
    assert ids(maker.list().data) == newest_first  # stable from one call to the next

    walked: list[str] = []
    cursor: dict[str, Any] = {}
    while True:
        page = maker.list(limit=2, **cursor)
        walked += ids(page.data)
        if not page.has_more:
            break
        cursor = {"starting_after": page.data[-1]["id"]}
    assert walked == newest_first

    backwards: list[str] = []
    cursor = {"ending_before": made[0]}
    while True:
        page = maker.list(limit=3, **cursor)
        backwards = ids(page.data) + backwards
        if not page.has_more:
            break
        cursor = {"ending_before": page.data[0]["id"]}
    assert backwards == newest_first[:-1]


def test_limit(maker: Maker, stripe_emulator: EmulatorServer) -> None:
    made = maker.many(12)
    default = maker.list()
    assert len(default.data) == 10 and default.has_more is True
    assert ids(default.data) == list(reversed(made))[:10]
    assert len(maker.list(limit=1).data) == 1
    whole = maker.list(limit=12)
    assert len(whole.data) == 12 and whole.has_more is False
    assert len(maker.list(limit=100).data) == 12

    path = f"/v1/{maker.kind}"
    for bad in ("0", "101", "abc", "-1", "1.5"):
        result = raw(stripe_emulator, "GET", path, {"limit": bad})
        assert_stripe_error(result, 400, code="parameter_invalid", param="limit")
    with pytest.raises(stripe.InvalidRequestError) as raised:
        maker.list(limit=101)
    assert raised.value.param == "limit"


def test_cursors(maker: Maker, stripe_emulator: EmulatorServer) -> None:
    made = maker.many(3)
    path = f"/v1/{maker.kind}"
    both = raw(stripe_emulator, "GET", path, {"starting_after": made[2], "ending_before": made[0]})
    error = assert_stripe_error(both, 400, code="parameter_invalid", param="ending_before")
    assert "starting_after" in error["message"]

    for cursor in ("starting_after", "ending_before"):
        for unknown in ("nope_123", "prod_x" if maker.kind != "products" else "XYZ"):
            result = raw(stripe_emulator, "GET", path, {cursor: unknown})
            assert_stripe_error(result, 404, code="resource_missing", param=cursor)
            assert "data" not in result.body  # never the first page again
    assert ids(maker.list(starting_after=made[1]).data) == [made[0]]
    assert ids(maker.list(ending_before=made[1]).data) == [made[2]]
    assert maker.list(starting_after=made[0]).data == []
    assert maker.list(ending_before=made[2]).data == []


def test_created_filters_combine_with_paging(maker: Maker, stripe_emulator: EmulatorServer) -> None:
    account = stripe_emulator.account
    account.clock.freeze()
    start = account.clock.timestamp()
    made = maker.many(6, step=10)  # created at start, start+10, ..., start+50
    at = [start + 10 * n for n in range(6)]

    assert ids(maker.list(created=at[2]).data) == [made[2]]
    assert ids(maker.list(created=at[2] + 1).data) == []
    assert ids(maker.list(created={"gt": at[3]}).data) == [made[5], made[4]]
    assert ids(maker.list(created={"gte": at[3]}).data) == [made[5], made[4], made[3]]
    assert ids(maker.list(created={"lt": at[1]}).data) == [made[0]]
    assert ids(maker.list(created={"lte": at[1]}).data) == [made[1], made[0]]

    window = {"gte": at[1], "lte": at[4]}
    first = maker.list(created=window, limit=2)
    assert ids(first.data) == [made[4], made[3]] and first.has_more is True
    second = maker.list(created=window, limit=2, starting_after=made[3])
    assert ids(second.data) == [made[2], made[1]] and second.has_more is False
    back = maker.list(created=window, limit=2, ending_before=made[1])
    assert ids(back.data) == [made[3], made[2]] and back.has_more is True
    top = maker.list(created=window, limit=2, ending_before=made[3])
    assert ids(top.data) == [made[4]] and top.has_more is False
    # A cursor outside the window still pages inside it.
    assert ids(maker.list(created=window, starting_after=made[5]).data) == made[1:5][::-1]

    bad = raw(stripe_emulator, "GET", f"/v1/{maker.kind}", {"created[gte]": "soon"})
    assert_stripe_error(bad, 400, code="parameter_invalid", param="created[gte]")
    unknown = raw(stripe_emulator, "GET", f"/v1/{maker.kind}", {"created[after]": "1"})
    assert_stripe_error(unknown, 400, code="parameter_unknown", param="created[after]")


def test_envelope_has_more_and_url(maker: Maker, stripe_emulator: EmulatorServer) -> None:
    empty = raw(stripe_emulator, "GET", f"/v1/{maker.kind}")
    assert empty.status == 200
    assert empty.body == {
        "object": "list",
        "data": [],
        "has_more": False,
        "url": f"/v1/{maker.kind}",
    }
    made = maker.many(3)
    page = raw(stripe_emulator, "GET", f"/v1/{maker.kind}", {"limit": 2})
    assert page.body["object"] == "list" and page.body["url"] == f"/v1/{maker.kind}"
    assert page.body["has_more"] is True and ids(page.body["data"]) == [made[2], made[1]]
    sdk_page = maker.list(limit=2)
    assert isinstance(sdk_page, stripe.ListObject)
    assert plain(sdk_page) == page.body


def test_auto_paging_iter_returns_everything_once(maker: Maker) -> None:
    made = maker.many(23)
    forward = ids(maker.list(limit=5).auto_paging_iter())
    assert forward == list(reversed(made))
    backward = ids(maker.list(limit=4, ending_before=made[0]).auto_paging_iter())
    assert backward == made[1:]
    newest = maker.list(limit=10, starting_after=made[-1]).auto_paging_iter()
    assert ids(newest) == list(reversed(made))[1:]


def test_deleted_object_is_not_a_cursor(client: stripe.StripeClient) -> None:
    client.v1.coupons.create(params={"id": "A", "percent_off": 5})
    client.v1.coupons.create(params={"id": "B", "percent_off": 5})
    client.v1.coupons.delete("B")
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.coupons.list(params={"starting_after": "B"})
    assert raised.value.http_status == 404 and raised.value.param == "starting_after"
    assert ids(client.v1.coupons.list().data) == ["A"]


def test_expand_in_lists(client: stripe.StripeClient, stripe_emulator: EmulatorServer) -> None:
    product = client.v1.products.create(params={"name": "Hat"})
    client.v1.coupons.create(
        params={
            "id": "EXP",
            "amount_off": 300,
            "currency": "usd",
            "applies_to": {"products": [product.id]},
            "currency_options": {"eur": {"amount_off": 280}},
        }
    )
    plain_page = plain(client.v1.coupons.list())
    assert "applies_to" not in plain_page["data"][0]
    assert "currency_options" not in plain_page["data"][0]
    page = plain(
        client.v1.coupons.list(params={"expand": ["data.applies_to", "data.currency_options"]})
    )
    assert page["data"][0]["applies_to"] == {"products": [product.id]}
    assert page["data"][0]["currency_options"] == {
        "eur": {"amount_off": 280},
        "usd": {"amount_off": 300},
    }
    only_one = plain(client.v1.coupons.list(params={"expand": ["data.applies_to"]}))
    assert "applies_to" in only_one["data"][0] and "currency_options" not in only_one["data"][0]

    client.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": "EXP"}})
    coupon = plain(client.v1.coupons.retrieve("EXP"))
    codes = plain(client.v1.promotion_codes.list(params={"expand": ["data.promotion.coupon"]}))
    assert codes["data"][0]["promotion"] == {"type": "coupon", "coupon": coupon}
    unexpanded = plain(client.v1.promotion_codes.list())
    assert unexpanded["data"][0]["promotion"] == {"type": "coupon", "coupon": "EXP"}

    for path, field in [
        ("/v1/coupons", "data.name"),
        ("/v1/products", "data.default_price.product"),
        ("/v1/coupons", "applies_to"),
    ]:
        result = raw(stripe_emulator, "GET", path, {"expand[]": field})
        assert_stripe_error(result, 400, param="expand", code=None)


def test_same_second_order_can_be_shuffled(maker: Maker, stripe_emulator: EmulatorServer) -> None:
    account = stripe_emulator.account
    account.clock.freeze()
    assert control(stripe_emulator, "GET", "ordering").body == {"same_second_order": "insertion"}
    shuffled = control(stripe_emulator, "POST", "ordering", {"same_second_order": "shuffled"})
    assert shuffled.body == {"same_second_order": "shuffled"}
    made = maker.many(12)
    listed = ids(maker.list(limit=100).data)
    # Stripe documents no order within one second: here it is neither insertion order nor
    # its reverse, yet stable, and cursors still page through every object exactly once.
    assert sorted(listed) == sorted(made) and listed not in (made, made[::-1])
    assert ids(maker.list(limit=100).data) == listed
    assert ids(maker.list(limit=5).auto_paging_iter()) == listed
    after = maker.list(limit=3, starting_after=listed[4])
    assert ids(after.data) == listed[5:8]
    assert control(stripe_emulator, "POST", "ordering", {"same_second_order": "x"}).status == 400
    control(stripe_emulator, "POST", "reset")
    assert account.same_second_order == "insertion"
