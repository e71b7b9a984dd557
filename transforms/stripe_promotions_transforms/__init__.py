"""SQL transforms: the current-state tables in schema `stripe`, built from `stripe_raw`."""

from .runner import TableChanges, TransformError, run_transforms

__all__ = ["TableChanges", "TransformError", "run_transforms"]
