"""The four verbs of django-stripe style sync actions, per object type.

    from stripe_promotions_pipeline import coupons
    coupons.sync_all()
    coupons.sync_by_ids(["SUMMER20"])
    coupons.sync_batch("coupons.jsonl")       # or a list of dicts (objects or webhook events)
    coupons.soft_delete("SUMMER20", reason="retired by finance")

Each is a pipeline run followed by the transforms; keyword options go to `PipelineConfig`.
`account="acct_..."` acts on a connected account (Stripe Connect); default the key's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from stripe_promotions import SyncRequest
from stripe_promotions.batch import read_batch_file, validate_batch

from .config import PipelineConfig
from .runner import RunResult, run_sync


class ObjectSync:
    """The verbs for one object type (`coupon`, `product` or `promotion_code`)."""

    def __init__(self, object_type: str) -> None:
        self.object_type = object_type

    def __repr__(self) -> str:
        return f"ObjectSync({self.object_type!r})"

    def sync_all(self, account: str | None = None, **settings: Any) -> RunResult:
        """List every object; those no longer listed become soft-deleted. `account="all"`
        lists every connected account too."""
        request = SyncRequest("sync_all", (self.object_type,))
        return run_sync(request, _settings(settings, account))

    def sync_by_ids(
        self, ids: Iterable[str], account: str | None = None, **settings: Any
    ) -> RunResult:
        """Retrieve these ids; one Stripe does not know becomes a deletion tombstone (unless the
        pipeline never saw it: then nothing is recorded)."""
        wanted = tuple(ids)
        if not wanted:
            raise ValueError("sync_by_ids needs at least one id")
        request = SyncRequest("sync_by_ids", (self.object_type,), ids=wanted)
        return run_sync(request, _settings(settings, account))

    def sync_batch(
        self,
        batch: str | Path | Sequence[Mapping[str, Any]],
        account: str | None = None,
        **settings: Any,
    ) -> RunResult:
        """Load objects (or saved webhook events) from a list or a JSON/JSONL file, all or none.

        An object needs only its `id`. One lacking some of its type's fields is a patch: the
        fields it has replace the stored ones, the others keep their last observed values.
        """
        items = read_batch_file(batch) if isinstance(batch, str | Path) else list(batch)
        checked = validate_batch(self.object_type, items)
        request = SyncRequest("sync_batch", (self.object_type,), items=tuple(checked))
        return run_sync(request, _settings(settings, account))

    def soft_delete(
        self,
        ids: str | Iterable[str],
        reason: str | None = None,
        *,
        force: bool = False,
        account: str | None = None,
        **settings: Any,
    ) -> RunResult:
        """Mark ids deleted by hand, without touching Stripe; a later observation clears it.

        Ids the pipeline never saw are refused (a typo) unless `force`.
        """
        wanted = (ids,) if isinstance(ids, str) else tuple(ids)
        if not wanted:
            raise ValueError("soft_delete needs at least one id")
        request = SyncRequest(
            "soft_delete", (self.object_type,), ids=wanted, reason=reason, force=force
        )
        return run_sync(request, _settings(settings, account))


def _settings(options: Mapping[str, Any], account: str | None) -> PipelineConfig:
    accounts = account if account in (None, "all") else (account,)
    return PipelineConfig(**{"progress": False, "accounts": accounts, **options})


coupons = ObjectSync("coupon")
products = ObjectSync("product")
promotion_codes = ObjectSync("promotion_code")
