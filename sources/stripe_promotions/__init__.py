"""The dlt source `stripe`: Stripe coupons, products and promotion codes, their changes and
deletions, as observations in `stripe_raw` (see resources.py, top to bottom).

Names are imported on first use, so `import stripe_promotions.batch` (checking a batch file)
loads neither dlt's resources nor the HTTP client.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .batch import BatchError
    from .errors import (
        StripeAccountError,
        StripeApiError,
        StripeAuthError,
        StripePermissionError,
        StripeSourceError,
        StripeUnreachableError,
    )
    from .plan import SyncRequest
    from .resources import stripe_source
    from .stats import RunStats

_EXPORTS = {
    "BatchError": "batch",
    "RunStats": "stats",
    "StripeAccountError": "errors",
    "StripeApiError": "errors",
    "StripeAuthError": "errors",
    "StripePermissionError": "errors",
    "StripeSourceError": "errors",
    "StripeUnreachableError": "errors",
    "SyncRequest": "plan",
    "stripe_source": "resources",
}
__all__ = [
    "BatchError",
    "RunStats",
    "StripeAccountError",
    "StripeApiError",
    "StripeAuthError",
    "StripePermissionError",
    "StripeSourceError",
    "StripeUnreachableError",
    "SyncRequest",
    "stripe_source",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
