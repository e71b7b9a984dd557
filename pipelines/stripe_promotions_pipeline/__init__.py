"""Run the Stripe source and the transforms: the command, the verbs and the orchestrators use this.

`run_sync(SyncRequest(...), PipelineConfig(...))` is one run; `coupons`, `products` and
`promotion_codes` offer the four verbs (sync_all, sync_by_ids, sync_batch, soft_delete).
"""

from stripe_promotions import SyncRequest

from .config import PipelineConfig, make_pipeline
from .errors import RunError
from .runner import RunResult, run_sync, run_transforms_only
from .summary import summary
from .verbs import ObjectSync, coupons, products, promotion_codes

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
