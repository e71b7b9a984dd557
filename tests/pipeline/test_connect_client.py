"""The connector's client acting for connected accounts (Stripe Connect), over HTTP against the
emulator's platform: `Stripe-Account` on every request, the account ids it lists, Stripe's
403 `account_invalid` in words that name the account, one rate budget shared by a platform."""

from __future__ import annotations

import pytest
import stripe

from stripe_emulator.server import EmulatorServer
from stripe_promotions.client import StripeApi
from stripe_promotions.errors import StripeAccountError, StripeSourceError
from stripe_promotions.listing import Lister
from stripe_promotions.rate_limit import RateBudget
from stripe_promotions.settings import ACCOUNTS_PATH
from tests.support import TEST_KEY


def coupon_ids(client: StripeApi) -> set[str]:
    """Every coupon id the client lists."""
    pages = Lister(client).list_pages("/v1/coupons")
    return {obj["id"] for page in pages for obj in page.objects}


def test_a_client_for_a_connected_account_sees_only_that_accounts_objects(
    stripe_emulator: EmulatorServer, client: stripe.StripeClient
) -> None:
    """The same key, with Stripe-Account, reads another account's coupons, and only those."""
    shop = stripe_emulator.account.add_connected_account()
    other = stripe_emulator.account.add_connected_account()
    client.v1.coupons.create(params={"id": "PLATFORM", "percent_off": 10})
    for account, name in ((shop.id, "SHOP"), (other.id, "OTHER")):
        for n in range(3):
            client.v1.coupons.create(
                params={"id": f"{name}{n}", "percent_off": 5}, options={"stripe_account": account}
            )
    client.v1.coupons.create(
        params={"id": "SAME", "percent_off": 1}, options={"stripe_account": shop.id}
    )
    client.v1.coupons.create(
        params={"id": "SAME", "percent_off": 2}, options={"stripe_account": other.id}
    )

    assert coupon_ids(StripeApi(TEST_KEY, stripe_emulator.url, account=shop.id)) == {
        "SHOP0",
        "SHOP1",
        "SHOP2",
        "SAME",
    }
    assert coupon_ids(StripeApi(TEST_KEY, stripe_emulator.url, account=other.id)) == {
        "OTHER0",
        "OTHER1",
        "OTHER2",
        "SAME",
    }
    assert coupon_ids(StripeApi(TEST_KEY, stripe_emulator.url)) == {"PLATFORM"}


def test_own_account_names_the_account_a_client_acts_for(
    stripe_emulator: EmulatorServer,
) -> None:
    """GET /v1/account: the key's own account, or the connected one with Stripe-Account."""
    shop = stripe_emulator.account.add_connected_account()
    platform = StripeApi(TEST_KEY, stripe_emulator.url).own_account()
    assert platform["object"] == "account" and platform["id"].startswith("acct_")
    assert platform["id"] != shop.id
    assert StripeApi(TEST_KEY, stripe_emulator.url, account=shop.id).own_account()["id"] == shop.id


def test_a_platforms_connected_accounts_list_like_any_list(
    stripe_emulator: EmulatorServer,
) -> None:
    """GET /v1/accounts pages through every connected account, each once."""
    connected = {stripe_emulator.account.add_connected_account().id for _ in range(27)}
    api = StripeApi(TEST_KEY, stripe_emulator.url, page_size=10)
    pages = Lister(api).list_pages(ACCOUNTS_PATH)
    listed = [obj["id"] for page in pages for obj in page.objects]
    assert sorted(listed) == sorted(connected)


def test_a_disconnected_account_fails_in_words_and_the_others_go_on(
    stripe_emulator: EmulatorServer, client: stripe.StripeClient
) -> None:
    """403 account_invalid names the account and never the key; another account still reads."""
    gone = stripe_emulator.account.add_connected_account()
    kept = stripe_emulator.account.add_connected_account()
    client.v1.coupons.create(
        params={"id": "KEPT", "percent_off": 5}, options={"stripe_account": kept.id}
    )
    shared = RateBudget(25.0, 25.0)
    stripe_emulator.account.disconnect_connected_account(gone.id)
    failing = StripeApi(TEST_KEY, stripe_emulator.url, account=gone.id, budget=shared)
    with pytest.raises(StripeAccountError) as refused:
        coupon_ids(failing)
    assert refused.value.account_id == gone.id
    message = str(refused.value)
    assert gone.id in message and "(403)" in message and "disconnected" in message
    assert TEST_KEY not in message and TEST_KEY[-12:] not in message
    assert failing.requests_made == 1  # refused for good: not retried
    still = StripeApi(TEST_KEY, stripe_emulator.url, account=kept.id, budget=shared)
    assert coupon_ids(still) == {"KEPT"}


def test_an_account_id_that_is_not_one_is_refused_before_any_request(
    stripe_emulator: EmulatorServer,
) -> None:
    """A typo in sources.stripe.accounts is reported without asking Stripe."""
    with pytest.raises(StripeSourceError, match="is not a Stripe account id"):
        StripeApi(TEST_KEY, stripe_emulator.url, account="cus_123")
    assert sum(stripe_emulator.account.requests.values()) == 0
