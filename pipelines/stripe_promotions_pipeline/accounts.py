"""Which accounts a fan-out loads (Dagster partitions, Airflow mapped tasks): the same choice
the source makes in one process (`sources.stripe.accounts`), made before any load starts."""

from __future__ import annotations

import os
from typing import Any

import dlt

from stripe_promotions.accounts import ALL, parse_accounts
from stripe_promotions.client import StripeApi
from stripe_promotions.listing import Lister
from stripe_promotions.settings import ACCOUNTS_PATH, DEFAULT_API_BASE

from .config import PipelineConfig


def accounts_to_load(config: PipelineConfig) -> list[str]:
    """The accounts `config` selects (its own `accounts`, else `sources.stripe.accounts`):
    the key's own account id when none is set, the listed ids, or for "all" the key's own
    and every connected account `GET /v1/accounts` lists now (disconnected ones are not)."""
    configured: Any = config.accounts
    if configured is None:
        configured = dlt.config.get("sources.stripe.accounts")
    selection = parse_accounts(configured)
    if isinstance(selection, tuple):
        return list(selection)
    api = platform_client(config)
    own = str(api.own_account()["id"])
    if selection != ALL:
        return [own]
    pages = Lister(api).list_pages(ACCOUNTS_PATH, parallel=False)
    return [own, *(str(obj["id"]) for page in pages for obj in page.objects)]


def platform_client(config: PipelineConfig) -> StripeApi:
    """A client for the key's own account, configured as the source would be."""
    key: Any = dlt.secrets.get("sources.stripe.api_key") or os.environ.get("STRIPE_API_KEY", "")
    base = (
        config.source_options.get("api_base")
        or config.api_base
        or dlt.config.get("sources.stripe.api_base")
        or DEFAULT_API_BASE
    )
    return StripeApi(str(key), str(base))
