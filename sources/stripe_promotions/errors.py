"""The source's errors: problems the user must fix (or retry later); messages say which."""

from __future__ import annotations


class StripeSourceError(Exception):
    """A problem the user must fix (or retry later); the message says which."""


class StripeAuthError(StripeSourceError):
    """Stripe refused the key (401)."""


class StripePermissionError(StripeSourceError):
    """The key may not read what we need (403)."""


class StripeAccountError(StripePermissionError):
    """The key may not act for a connected account (403 `account_invalid`): it disconnected,
    was deleted, or never was this platform's."""

    def __init__(self, message: str, account_id: str) -> None:
        super().__init__(message)
        self.account_id = account_id


class StripeUnreachableError(StripeSourceError):
    """No answer from the base URL after every retry."""


class StripeApiError(StripeSourceError):
    """Any other error answer, including retries exhausted on 429 or 5xx."""
