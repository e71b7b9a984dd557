"""The API key and base URL: checked before any request, and never printed whole."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from .errors import StripeAuthError, StripeSourceError

# A secret (sk_) or restricted (rk_) key, live or test.
_KEY = r"(sk|rk)_(test|live)_[0-9A-Za-z]"
KEY_FORMAT = re.compile(rf"^{_KEY}+$")
# A connected account's id, sent as `Stripe-Account` to act for it (Stripe Connect).
ACCOUNT_FORMAT = re.compile(r"^acct_[0-9A-Za-z]+$")
# A key inside any text (a message, a traceback), to scrub before it is shown.
KEY_IN_TEXT = re.compile(rf"\b{_KEY}{{4,}}")


def redact_key(key: str) -> str:
    """A key as safe to print: `sk_test_…wxyz`."""
    prefix = key[:8] if KEY_FORMAT.match(key) else ""
    return f"{prefix}…{key[-4:]}" if len(key) > 12 else "…"


def key_mode(key: str) -> str:
    """`live` or `test`, from the key's prefix."""
    return "live" if "_live_" in key[:8] else "test"


def check_key(key: str | None) -> str:
    """The key, or an error saying how to provide a usable one."""
    if not key:
        raise StripeAuthError(
            "No Stripe API key: set STRIPE_API_KEY, or api_key under [sources.stripe] in "
            ".dlt/secrets.toml (or SOURCES__STRIPE__API_KEY)."
        )
    key = key.strip()
    if not KEY_FORMAT.match(key):
        raise StripeAuthError(
            f"The Stripe API key {redact_key(key)} is malformed: expected a secret key "
            "(sk_live_…/sk_test_…) or a restricted key (rk_live_…/rk_test_…)."
        )
    return key


def check_account(account_id: str) -> str:
    """A connected account's id, or an error saying what one looks like."""
    if not ACCOUNT_FORMAT.match(account_id):
        raise StripeSourceError(
            f"{account_id!r} is not a Stripe account id: connected accounts are named "
            "acct_… (sources.stripe.accounts)."
        )
    return account_id


def check_api_base(url: str) -> str:
    """The base URL without a trailing slash, or an error naming what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StripeSourceError(
            f"The Stripe API base URL {url!r} is not an http(s) URL: use e.g. "
            "https://api.stripe.com or http://127.0.0.1:12111 (--api-base or "
            "SOURCES__STRIPE__API_BASE)."
        )
    if parts.path not in ("", "/") or parts.query:
        raise StripeSourceError(
            f"The Stripe API base URL {url!r} must not have a path or query: Stripe's paths "
            "(/v1/...) are added to it."
        )
    return url.rstrip("/")
