"""Run the Stripe source and the transforms: the command, the verbs and the orchestrators use this.

`run_sync(SyncRequest(...), PipelineConfig(...))` is one run; `coupons`, `products` and
`promotion_codes` offer the four verbs (sync_all, sync_by_ids, sync_batch, soft_delete).
Names are imported on first use, so the command can choose Arrow's allocator before anything
imports pyarrow (launch.py).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stripe_promotions import SyncRequest

    from .config import PipelineConfig, make_pipeline
    from .errors import RunError
    from .runner import RunResult, run_sync, run_transforms_only
    from .summary import summary
    from .verbs import ObjectSync, coupons, products, promotion_codes

_EXPORTS = {
    "ObjectSync": ".verbs",
    "PipelineConfig": ".config",
    "RunError": ".errors",
    "RunResult": ".runner",
    "SyncRequest": "stripe_promotions",
    "coupons": ".verbs",
    "make_pipeline": ".config",
    "products": ".verbs",
    "promotion_codes": ".verbs",
    "run_sync": ".runner",
    "run_transforms_only": ".runner",
    "summary": ".summary",
}
__all__ = [
    "ObjectSync",
    "PipelineConfig",
    "RunError",
    "RunResult",
    "SyncRequest",
    "coupons",
    "make_pipeline",
    "products",
    "promotion_codes",
    "run_sync",
    "run_transforms_only",
    "summary",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name], __name__), name)
