"""Stripe Connect in the emulator, over HTTP through the official SDK: a platform with connected
accounts behind one key, `Stripe-Account` / `Stripe-Context`, `/v1/account(s)`, Stripe's 403
`account_invalid`, rate-limit budgets, the controls and the command line.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
import stripe

from stripe_emulator.__main__ import build_account, parse_args
from stripe_emulator.account import PLATFORM_ID, Account, ConnectedAccount
from stripe_emulator.connected_accounts import HEADER_DEFAULTS
from stripe_emulator.controls import CONTROLS
from stripe_emulator.server import EmulatorServer
from tests.emulator.emulator_support import (
    TEST_KEY,
    assert_stripe_error,
    control,
    emulator_process,
    fixtures,
    ids,
    json_type,
    raw,
    sdk,
    sdk_error_body,
)

REDACTED_KEY = "sk_test_************6789"


def no_access_message(account_id: str, key: str = REDACTED_KEY) -> str:
    return (
        f"The provided key '{key}' does not have access to account '{account_id}' (or that "
        "account does not exist). Application access may have been revoked."
    )


NONE: stripe.RequestOptions = {}  # the key's own account


def as_account(account_id: str) -> stripe.RequestOptions:
    """SDK request options acting on a connected account (sent as `Stripe-Account`)."""
    return {"stripe_account": account_id}


def in_context(context: str) -> stripe.RequestOptions:
    """SDK request options acting in a `Stripe-Context`."""
    return {"stripe_context": context}


def refused(call: Callable[[], Any], account_id: str) -> dict[str, Any]:
    """The call fails as Stripe answers for an account the key cannot act on: 403."""
    with pytest.raises(stripe.PermissionError) as raised:
        call()
    assert raised.value.http_status == 403
    body = sdk_error_body(raised.value)
    assert body == {
        "type": "invalid_request_error",
        "code": "account_invalid",
        "message": no_access_message(account_id),
    }
    return body


@pytest.fixture
def platform(stripe_emulator: EmulatorServer) -> Iterator[Account]:
    """The emulator's account, with the test's own setup free of rate limits."""
    yield stripe_emulator.account


@pytest.fixture
def client(stripe_emulator: EmulatorServer) -> stripe.StripeClient:
    return sdk(stripe_emulator)


def two_shops(platform: Account) -> tuple[ConnectedAccount, ConnectedAccount]:
    return (
        platform.add_connected_account(email="a@example.com"),
        platform.add_connected_account(email="b@example.com", type="express", country="de"),
    )


# -- one account per Stripe-Account -------------------------------------------------------------


def test_objects_of_one_connected_account_are_invisible_elsewhere(
    stripe_emulator: EmulatorServer, platform: Account, client: stripe.StripeClient
) -> None:
    shop_a, shop_b = two_shops(platform)
    with platform.rate_limits.paused():
        coupon = client.v1.coupons.create(
            params={"id": "SUMMER", "percent_off": 10}, options=as_account(shop_a.id)
        )
        product = client.v1.products.create(params={"name": "Mug"}, options=as_account(shop_a.id))
        code = client.v1.promotion_codes.create(
            params={"promotion": {"type": "coupon", "coupon": "SUMMER"}, "code": "HELLO"},
            options=as_account(shop_a.id),
        )
        # A coupon id is the account's own: the same id is free in another account.
        other = client.v1.coupons.create(
            params={"id": "SUMMER", "amount_off": 500, "currency": "eur"},
            options=as_account(shop_b.id),
        )
    assert (coupon.percent_off, other.amount_off) == (10, 500)
    assert ids(client.v1.coupons.list(options=as_account(shop_a.id))) == ["SUMMER"]
    assert client.v1.coupons.retrieve("SUMMER", options=as_account(shop_b.id)).amount_off == 500
    for options in (NONE, as_account(shop_b.id)):
        assert ids(client.v1.products.list(options=options)) == []
        assert ids(client.v1.promotion_codes.list(options=options)) == []
        for retrieve, object_id in (
            (client.v1.products.retrieve, product.id),
            (client.v1.promotion_codes.retrieve, code.id),
        ):
            with pytest.raises(stripe.InvalidRequestError) as raised:
                retrieve(object_id, options=options)
            assert sdk_error_body(raised.value)["code"] == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.coupons.retrieve("SUMMER")  # nor in the platform's own account
    # A promotion code names a coupon of its own account only.
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.promotion_codes.create(
            params={"promotion": {"type": "coupon", "coupon": "SUMMER"}}
        )
    assert sdk_error_body(raised.value)["param"] == "promotion[coupon]"
    # The truth agrees: per account, in Python and over the controls.
    assert set(shop_a.state("coupon")) == set(shop_b.state("coupon")) == {"SUMMER"}
    assert platform.state("coupon") == {} and shop_b.state("product") == {}
    state = control(stripe_emulator, "GET", f"connected_accounts/{shop_a.id}/state/promotion_code")
    assert list(state.body) == [code.id]


def test_ids_and_events_are_per_account(platform: Account, client: stripe.StripeClient) -> None:
    shop_a, shop_b = two_shops(platform)
    with platform.rate_limits.paused():
        made = {
            name: client.v1.products.create(params={"name": name}, options=options)
            for name, options in (
                ("own", NONE),
                ("a", as_account(shop_a.id)),
                ("b", as_account(shop_b.id)),
            )
        }
        client.v1.products.update(
            made["a"].id, params={"active": False}, options=as_account(shop_a.id)
        )
    assert len({product.id for product in made.values()}) == 3  # ids unique across accounts
    events = {
        name: list(client.v1.events.list(options=options).auto_paging_iter())
        for name, options in (
            ("own", NONE),
            ("a", as_account(shop_a.id)),
            ("b", as_account(shop_b.id)),
        )
    }
    assert [e.type for e in events["a"]] == ["product.updated", "product.created"]
    assert [e.type for e in events["own"]] == [e.type for e in events["b"]] == ["product.created"]
    # Stripe: events of connected accounts "include an account attribute"; the platform's own
    # events have none.
    assert {e.account for e in events["a"]} == {shop_a.id}
    assert {e.account for e in events["b"]} == {shop_b.id}
    assert "account" not in events["own"][0].to_dict()
    assert events["a"][1].data.object.id == made["a"].id
    event_id = events["a"][0].id
    assert client.v1.events.retrieve(event_id, options=as_account(shop_a.id)).id == event_id
    for options in (NONE, as_account(shop_b.id)):
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.events.retrieve(event_id, options=options)


def test_clock_driven_rules_run_in_every_account(
    platform: Account, client: stripe.StripeClient
) -> None:
    shop = platform.add_connected_account()
    now = platform.clock.timestamp()
    with platform.rate_limits.paused():
        client.v1.coupons.create(
            params={"id": "SOON", "percent_off": 5, "redeem_by": now + 3600},
            options=as_account(shop.id),
        )
        assert client.v1.coupons.retrieve("SOON", options=as_account(shop.id)).valid is True
        platform.advance_clock(3601)  # one clock for every account
        assert client.v1.coupons.retrieve("SOON", options=as_account(shop.id)).valid is False
        assert len(client.v1.events.list(options=as_account(shop.id)).data) == 1
        platform.advance_clock(31 * 24 * 3600)  # events age out after 30 days
        assert client.v1.events.list(options=as_account(shop.id)).data == []
    # The emulator's settings hold in every account: an event delay too.
    platform.set_event_delay(60)
    with platform.rate_limits.paused():
        client.v1.products.create(params={"name": "Late"}, options=as_account(shop.id))
        assert client.v1.events.list(options=as_account(shop.id)).data == []
        platform.advance_clock(61)
        assert len(client.v1.events.list(options=as_account(shop.id)).data) == 1


def test_stripe_context_with_a_connected_account_id(
    platform: Account, client: stripe.StripeClient
) -> None:
    shop = platform.add_connected_account()
    with platform.rate_limits.paused():
        client.v1.coupons.create(
            params={"id": "CTX", "percent_off": 1}, options=in_context(shop.id)
        )
    assert set(shop.state("coupon")) == {"CTX"}
    assert ids(client.v1.coupons.list(options=in_context(shop.id))) == ["CTX"]
    assert client.v1.accounts.retrieve_current(options=in_context(shop.id)).id == shop.id


def test_a_connected_account_has_its_own_default_api_version(
    stripe_emulator: EmulatorServer, platform: Account
) -> None:
    old = platform.add_connected_account(api_version="2024-06-20")
    new = platform.add_connected_account()  # the platform's version when connected
    for shop, version in ((old, "2024-06-20"), (new, platform.api_version)):
        answer = raw(stripe_emulator, "GET", "/v1/coupons", headers={"Stripe-Account": shop.id})
        assert answer.status == 200 and answer.headers["Stripe-Version"] == version
    with platform.rate_limits.paused():
        coupon = raw(
            stripe_emulator,
            "POST",
            "/v1/coupons",
            {"id": "OLD", "percent_off": 5},
            headers={"Stripe-Account": old.id},
        )
        assert coupon.status == 200
        code = raw(
            stripe_emulator,
            "POST",
            "/v1/promotion_codes",
            {"coupon": "OLD"},  # the shape before 2025-09-30
            headers={"Stripe-Account": old.id},
        )
    assert code.status == 200 and code.body["coupon"]["id"] == "OLD"


def test_idempotency_keys_are_per_account(
    stripe_emulator: EmulatorServer, platform: Account
) -> None:
    shop_a, shop_b = two_shops(platform)
    with platform.rate_limits.paused():
        answers = [
            raw(
                stripe_emulator,
                "POST",
                "/v1/products",
                {"name": "Same key"},
                headers={"Stripe-Account": shop.id, "Idempotency-Key": "k1"},
            )
            for shop in (shop_a, shop_b, shop_a)
        ]
    assert [a.status for a in answers] == [200, 200, 200]
    assert answers[2].headers.get("Idempotent-Replayed") == "true"
    assert answers[0].body == answers[2].body
    assert answers[0].body["id"] != answers[1].body["id"]
    assert len(shop_a.state("product")) == len(shop_b.state("product")) == 1


# -- /v1/account and /v1/accounts --------------------------------------------------------------


def test_the_account_objects_have_stripes_fields(
    platform: Account, client: stripe.StripeClient
) -> None:
    shop = platform.add_connected_account(
        email="shop@example.com", type="custom", country="fr", metadata={"tier": "gold"}
    )
    own = client.v1.accounts.retrieve_current().to_dict(recursive=True)
    assert own["id"] == PLATFORM_ID and own["object"] == "account"
    assert own["controller"] == {"type": "account"}
    connected = client.v1.accounts.retrieve(shop.id).to_dict(recursive=True)
    assert connected == client.v1.accounts.list().data[0].to_dict(recursive=True)
    assert connected["email"] == "shop@example.com" and connected["country"] == "FR"
    assert connected["type"] == "custom" and connected["metadata"] == {"tier": "gold"}
    assert connected["created"] == shop.created
    assert connected["controller"] == {"is_controller": True, "type": "application"}
    # `GET /v1/account` with Stripe-Account is that account (as `GET /v1/accounts/{id}`).
    itself = client.v1.accounts.retrieve_current(options=as_account(shop.id)).to_dict(
        recursive=True
    )
    assert itself == connected
    standard = platform.add_connected_account()  # it controls itself
    retrieved = client.v1.accounts.retrieve(standard.id).to_dict(recursive=True)
    assert retrieved["controller"] == {"type": "account"}
    example = fixtures()["account"]
    for body in (own, connected, itself):
        assert set(body) <= set(example), set(body) - set(example)
        for name, value in body.items():
            if value is not None and example[name] is not None:
                assert json_type(value) == json_type(example[name]), name


def test_accounts_list_pages_through_many_accounts(
    stripe_emulator: EmulatorServer, platform: Account, client: stripe.StripeClient
) -> None:
    created = [platform.add_connected_account().id for _ in range(12)]
    platform.clock.freeze()
    platform.advance_clock(5)
    created += [platform.add_connected_account().id for _ in range(18)]  # same second
    newest_first = created[::-1]
    with platform.rate_limits.paused():
        listed = ids(client.v1.accounts.list(params={"limit": 10}).auto_paging_iter())
        assert listed == newest_first
        page = client.v1.accounts.list(params={"limit": 7, "starting_after": newest_first[9]})
        assert ids(page) == newest_first[10:17] and page.has_more is True
        before = client.v1.accounts.list(params={"limit": 3, "ending_before": newest_first[9]})
        assert ids(before) == newest_first[6:9]
        recent = client.v1.accounts.list(
            params={"limit": 100, "created": {"gte": platform.clock.timestamp()}}
        )
        assert ids(recent) == newest_first[:18] and recent.has_more is False
        answer = raw(stripe_emulator, "GET", "/v1/accounts", {"limit": 0})
        assert_stripe_error(answer, 400, code="parameter_invalid", param="limit")
        answer = raw(stripe_emulator, "GET", "/v1/accounts", {"type": "standard"})
        assert_stripe_error(answer, 400, code="parameter_unknown", param="type")
        answer = raw(stripe_emulator, "GET", "/v1/accounts", [("expand[]", "data.settings")])
        assert_stripe_error(answer, 400, param="expand")
        # A connected account is no platform: "If you're not a platform, the list is empty."
        assert client.v1.accounts.list(options=as_account(created[0])).data == []
    assert raw(stripe_emulator, "GET", "/v1/accounts").body["url"] == "/v1/accounts"


def test_a_key_that_is_no_platforms_cannot_use_stripe_account(
    stripe_emulator: EmulatorServer, client: stripe.StripeClient
) -> None:
    assert client.v1.accounts.list().data == []  # "If you're not a platform, the list is empty."
    refused(
        lambda: client.v1.coupons.list(options=as_account("acct_1NotConnected00")),
        "acct_1NotConnected00",
    )
    refused(lambda: client.v1.accounts.retrieve("acct_1NotConnected00"), "acct_1NotConnected00")


@pytest.mark.parametrize(
    "value", ["acct_1UnknownAccount0", "foo", "cus_Ku8ajLiFEsdnEB", "acct_", "acct_x y", ""]
)
def test_an_unknown_or_malformed_account_is_refused(
    stripe_emulator: EmulatorServer, platform: Account, value: str
) -> None:
    platform.add_connected_account()
    for path in ("/v1/coupons", "/v1/account", "/v1/events", "/v1/customers"):
        answer = raw(stripe_emulator, "GET", path, headers={"Stripe-Account": value})
        error = assert_stripe_error(answer, 403, code="account_invalid")
        assert error["message"] == no_access_message(value)
    # The key is checked first: a bad key is still a 401.
    answer = raw(
        stripe_emulator, "GET", "/v1/coupons", key="pk_test_nope", headers={"Stripe-Account": value}
    )
    assert_stripe_error(answer, 401)
    assert platform.state("coupon") == {}


def test_a_stripe_context_path_the_key_cannot_reach_is_refused(
    stripe_emulator: EmulatorServer, platform: Account
) -> None:
    shop = platform.add_connected_account()
    for value in (f"{PLATFORM_ID}/{shop.id}", f"{shop.id}/acct_1Recipient000000", "acct_1Nobody"):
        answer = raw(stripe_emulator, "GET", "/v1/coupons", headers={"Stripe-Context": value})
        error = assert_stripe_error(answer, 403, code="account_invalid")
        assert error["message"] == no_access_message(value)


def test_the_platforms_own_id_in_the_header(
    stripe_emulator: EmulatorServer, platform: Account, client: stripe.StripeClient
) -> None:
    refused(lambda: client.v1.coupons.list(options=as_account(PLATFORM_ID)), PLATFORM_ID)
    refused(lambda: client.v1.coupons.list(options=in_context(PLATFORM_ID)), PLATFORM_ID)
    # The other reading: the own id acts on the own account.
    answer = control(stripe_emulator, "POST", "connect", {"own_account_header": "accept"})
    assert answer.body["own_account_header"] == "accept"
    assert client.v1.accounts.retrieve_current(options=as_account(PLATFORM_ID)).id == PLATFORM_ID
    assert client.v1.accounts.retrieve(PLATFORM_ID).id == PLATFORM_ID  # by URL: always


def test_both_headers_at_once(stripe_emulator: EmulatorServer, platform: Account) -> None:
    shop_a, shop_b = two_shops(platform)
    shop_b.seed(promotion_codes=10)
    headers = {"Stripe-Account": shop_a.id, "Stripe-Context": shop_b.id}
    answer = raw(stripe_emulator, "GET", "/v1/coupons", headers=headers)
    error = assert_stripe_error(answer, 400)
    assert error["message"] == (
        "You may only specify one of these headers: Stripe-Account, Stripe-Context."
    )
    platform.connect.configure(both_headers="context")  # "supersedes": Stripe-Context wins
    answer = raw(stripe_emulator, "GET", "/v1/coupons", {"limit": 100}, headers=headers)
    assert {c["id"] for c in answer.body["data"]} == set(shop_b.state("coupon"))


def test_disconnected_and_deleted_accounts(
    stripe_emulator: EmulatorServer, platform: Account, client: stripe.StripeClient
) -> None:
    shop_a, shop_b = two_shops(platform)
    gone = platform.add_connected_account()
    platform.disconnect_connected_account(shop_a.id)
    platform.delete_connected_account(gone.id)
    for shop in (shop_a, gone):
        refused(partial(client.v1.coupons.list, options=as_account(shop.id)), shop.id)
        refused(partial(client.v1.accounts.retrieve, shop.id), shop.id)
        refused(partial(client.v1.accounts.retrieve_current, options=as_account(shop.id)), shop.id)
    # "Returns a list of accounts connected to your platform": they are not.
    assert ids(client.v1.accounts.list()) == [shop_b.id]
    assert [a.status for a in platform.connected_accounts()] == [
        "deleted",
        "connected",
        "disconnected",
    ]
    assert platform.deleted_ids("account") == {gone.id}
    with pytest.raises(ValueError, match="already disconnected"):
        platform.disconnect_connected_account(shop_a.id)
    with pytest.raises(ValueError, match="already deleted"):
        platform.disconnect_connected_account(gone.id)
    # A cursor on an account no longer connected is a 404, as a deleted object's.
    answer = raw(stripe_emulator, "GET", "/v1/accounts", {"starting_after": shop_a.id})
    assert_stripe_error(answer, 404, code="resource_missing", param="starting_after")


def test_disconnect_mid_way_fails_the_next_request_only_for_that_account(
    platform: Account, client: stripe.StripeClient
) -> None:
    shop_a, shop_b = two_shops(platform)
    for shop in (shop_a, shop_b, platform):
        shop.seed(promotion_codes=100, coupons=30)
    with platform.rate_limits.paused():
        pages = client.v1.coupons.list(params={"limit": 10}, options=as_account(shop_a.id))
        walk = pages.auto_paging_iter()
        first = [next(walk).id for _ in range(10)]
        assert set(first) <= set(shop_a.state("coupon"))
        platform.disconnect_connected_account(shop_a.id)
        refused(lambda: next(walk), shop_a.id)  # the next page
        b_coupons = ids(
            client.v1.coupons.list(params={"limit": 100}, options=as_account(shop_b.id))
        )
        assert set(b_coupons) == set(shop_b.state("coupon"))
        own = ids(client.v1.coupons.list(params={"limit": 100}).auto_paging_iter())
        assert set(own) == set(platform.state("coupon"))


# -- rate limits: whose budget ------------------------------------------------------------------


class HandClock:
    """A monotonic clock that moves only when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def admitted(call: Callable[[], Any], times: int) -> int:
    """How many of `times` calls are answered (the rest must be 429s)."""
    answered = 0
    for _ in range(times):
        try:
            call()
        except stripe.RateLimitError as error:
            assert sdk_error_body(error)["code"] == "rate_limit"
        else:
            answered += 1
    return answered


def test_by_default_connected_accounts_share_the_platforms_budget(
    platform: Account, client: stripe.StripeClient
) -> None:
    shop_a, shop_b = two_shops(platform)
    platform.rate_limits.clock = HandClock()
    assert platform.rate_limits.connect_budget == "platform"
    # Per operation: 25 GET /v1/coupons a second, whichever account they are for.
    assert admitted(lambda: client.v1.coupons.list(options=as_account(shop_a.id)), 15) == 15
    assert admitted(lambda: client.v1.coupons.list(options=as_account(shop_b.id)), 15) == 10
    assert admitted(client.v1.coupons.list, 1) == 0
    # Account-wide: 25 test-mode requests a second in all, so other operations are full too.
    assert admitted(lambda: client.v1.products.list(options=as_account(shop_b.id)), 1) == 0
    message = platform.rate_limits.rejected()
    assert message == {"GET /v1/coupons": 6, "GET /v1/products": 1}


def test_per_account_budgets_are_the_other_reading(
    stripe_emulator: EmulatorServer, platform: Account, client: stripe.StripeClient
) -> None:
    shop_a, shop_b = two_shops(platform)
    platform.rate_limits.clock = HandClock()
    answer = control(stripe_emulator, "POST", "connect", {"connect_budget": "per_account"})
    assert answer.body == {**HEADER_DEFAULTS, "connect_budget": "per_account"}
    for options in (as_account(shop_a.id), as_account(shop_b.id), NONE):
        assert admitted(partial(client.v1.coupons.list, options=options), 26) == 25
    # An account the platform never connected draws on the platform's own budget.
    with pytest.raises(stripe.RateLimitError):
        client.v1.coupons.list(options=as_account("acct_1Stranger0000000"))
    platform.reset()
    assert platform.rate_limits.connect_budget == "platform"
    assert platform.connected_accounts() == []


# -- controls and the command line --------------------------------------------------------------


def test_the_controls(stripe_emulator: EmulatorServer, client: stripe.StripeClient) -> None:
    listed = {
        (c["method"], c["path"]) for c in control(stripe_emulator, "GET", "").body["controls"]
    }
    connect_controls = {
        ("GET", "/_emulator/connected_accounts"),
        ("POST", "/_emulator/connected_accounts"),
        ("POST", "/_emulator/connected_accounts/{id}/disconnect"),
        ("DELETE", "/_emulator/connected_accounts/{id}"),
        ("GET", "/_emulator/connected_accounts/{id}/state/{kind}"),
        ("GET", "/_emulator/connect"),
        ("POST", "/_emulator/connect"),
    }
    assert connect_controls <= listed
    assert connect_controls <= {(c.method, c.path) for c in CONTROLS}
    added = control(
        stripe_emulator,
        "POST",
        "connected_accounts",
        {"email": "shop@example.com", "promotion_codes": 20, "seed": 7, "metadata": {"k": "v"}},
    )
    assert added.status == 200, added.body
    shop_id = added.body["id"]
    assert (
        added.body["status"] == "connected" and added.body["account"]["email"] == "shop@example.com"
    )
    assert added.body["objects"]["promotion_codes"] == 20
    assert added.body["account"] == client.v1.accounts.retrieve(shop_id).to_dict(recursive=True)
    named = control(
        stripe_emulator, "POST", "connected_accounts", {"id": "acct_1Chosen", "type": "express"}
    )
    assert named.body["id"] == "acct_1Chosen" and named.body["type"] == "express"
    for bad in (
        {"id": "acct_1Chosen"},
        {"id": "shop"},
        {"type": "platinum"},
        {"country": "USA"},
        {"nme": "x"},
    ):
        refusal = control(stripe_emulator, "POST", "connected_accounts", bad)
        assert refusal.status == 400 and refusal.body["error"]["message"], (bad, refusal.body)
    state = control(stripe_emulator, "GET", f"connected_accounts/{shop_id}/state/promotion_code")
    assert len(state.body) == 20
    every = control(stripe_emulator, "GET", "connected_accounts").body
    assert [a["id"] for a in every["connected_accounts"]] == ["acct_1Chosen", shop_id]
    assert every["settings"] == {**HEADER_DEFAULTS, "connect_budget": "platform"}
    assert (
        control(stripe_emulator, "POST", f"connected_accounts/{shop_id}/disconnect").body["status"]
        == "disconnected"
    )
    assert (
        control(stripe_emulator, "POST", f"connected_accounts/{shop_id}/disconnect").status == 400
    )
    assert (
        control(stripe_emulator, "DELETE", "connected_accounts/acct_1Chosen").body["status"]
        == "deleted"
    )
    missing = control(stripe_emulator, "DELETE", "connected_accounts/acct_1Nobody")
    assert missing.status == 404 and missing.body["error"]["code"] == "resource_missing"
    statuses = [
        a["status"]
        for a in control(stripe_emulator, "GET", "connected_accounts").body["connected_accounts"]
    ]
    assert statuses == ["deleted", "disconnected"]
    assert control(stripe_emulator, "POST", "connect", {"both_headers": "sometimes"}).status == 400
    assert control(stripe_emulator, "GET", "connect").body == {
        **HEADER_DEFAULTS,
        "connect_budget": "platform",
    }
    assert control(stripe_emulator, "POST", "reset").status == 200
    assert control(stripe_emulator, "GET", "connected_accounts").body["connected_accounts"] == []


def test_command_line_platform_with_seeded_connected_accounts() -> None:
    args = parse_args(["--seed", "200", "--connected-accounts", "5"])
    account = build_account(args)
    shops = account.connected_accounts()
    assert len(shops) == 5
    for shop in shops:  # a tenth of the platform's seed each, each its own data
        assert shop.counts()["promotion_codes"] == 20 and shop.status == "connected"
    assert len({frozenset(shop.state("promotion_code")) for shop in shops}) == 5
    demo = build_account(parse_args(["--seed", "demo", "--connected-accounts", "2"]))
    assert [s.counts()["promotion_codes"] for s in demo.connected_accounts()] == [6, 6]
    bare = build_account(parse_args(["--connected-accounts", "2"]))
    assert [s.counts()["coupons"] for s in bare.connected_accounts()] == [0, 0]
    chosen = build_account(parse_args(["--connected-accounts", "1", "--connected-seed", "demo"]))
    assert chosen.connected_accounts()[0].counts()["promotion_codes"] == 60
    per_account = parse_args(["--rate-limit-connect-budget", "per_account"])
    assert build_account(per_account).rate_limits.connect_budget == "per_account"
    for flags in (
        ["--connected-accounts", "x"],
        ["--connected-accounts", "-1"],
        ["--connected-seed", "lots"],
        ["--rate-limit-connect-budget", "shared"],
    ):
        with pytest.raises(SystemExit) as exited:
            parse_args(flags)
        assert exited.value.code == 2


def test_command_line_benchmark_scale_starts_quickly() -> None:
    started = time.monotonic()
    account = build_account(parse_args(["--seed", "1000", "--connected-accounts", "200"]))
    assert len(account.connected_accounts(status="connected")) == 200
    assert time.monotonic() - started < 30


def test_served_platform_with_connected_accounts() -> None:
    with emulator_process("--seed", "demo", "--connected-accounts", "3") as (line, client):
        assert re.search(r"; 3 connected accounts;", line), line
        assert re.search(r"60 promotion codes", line), line
        shops = ids(client.v1.accounts.list().auto_paging_iter())
        assert len(shops) == 3
        for shop in shops:
            codes = client.v1.promotion_codes.list(params={"limit": 100}, options=as_account(shop))
            assert len(codes.data) == 6
        assert len(client.v1.promotion_codes.list(params={"limit": 100}).data) == 60
        # The process's key is any well-formed key: the key's account is the platform.
        assert client.v1.accounts.retrieve_current().id == PLATFORM_ID


def test_reset_forgets_connected_accounts_and_ids_repeat(platform: Account) -> None:
    first = [platform.add_connected_account().id for _ in range(3)]
    platform.reset()
    assert platform.connected_accounts() == []
    assert [platform.add_connected_account().id for _ in range(3)] == first
    assert all(re.fullmatch(r"acct_1[0-9A-Za-z]{15}", i) for i in first)
    assert TEST_KEY.endswith("6789")
