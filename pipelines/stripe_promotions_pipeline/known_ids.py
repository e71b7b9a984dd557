"""Ids the destination has seen: a typo given to sync-ids or soft-delete is not a deletion."""

from __future__ import annotations

from dataclasses import replace

import dlt

from stripe_promotions import SyncRequest
from stripe_promotions.settings import OBJECT_TYPES
from stripe_promotions_transforms.runner import SCHEMA

from .errors import RunError


def seen_ids(
    pipeline: dlt.Pipeline, object_type: str, ids: tuple[str, ...], account: str | None
) -> set[str]:
    """Which of `ids` the current-state table holds for `account` (None: for any account;
    none before the first transforms)."""
    table = OBJECT_TYPES[object_type].table
    with pipeline.sql_client() as client:
        found = client.execute_sql(
            "SELECT COUNT(*) FROM information_schema.tables "
            "WHERE table_schema = %s AND table_name = %s",
            SCHEMA,
            table,
        )
        if not found or not found[0][0]:
            return set()
        placeholders = ", ".join(["%s"] * len(ids))
        query = f"SELECT id FROM {SCHEMA}.{table} WHERE id IN ({placeholders})"
        columns = client.execute_sql(
            "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = %s AND column_name = 'account_id'",
            SCHEMA,
            table,
        )
        if account is not None and columns and columns[0][0]:
            rows = client.execute_sql(f"{query} AND account_id = %s", *ids, account)
        else:
            rows = client.execute_sql(query, *ids)
    return {str(row[0]) for row in rows or []}


def checked_request(
    pipeline: dlt.Pipeline, request: SyncRequest, account: str | None = None
) -> SyncRequest:
    """The request with the ids the destination never saw marked, or refused for soft delete.

    Sync by ids records nothing for an unseen id Stripe does not know either; soft delete
    refuses unseen ids unless asked to `force` (before anything is loaded).
    """
    if request.mode not in ("sync_by_ids", "soft_delete") or not request.ids:
        return request
    object_type = request.object_types[0]
    seen = seen_ids(pipeline, object_type, request.ids, account)
    unseen = tuple(i for i in dict.fromkeys(request.ids) if i not in seen)
    if request.mode == "sync_by_ids":
        return replace(request, unseen_ids=unseen)
    if unseen and not request.force:
        names = ", ".join(map(repr, unseen))
        raise RunError(
            f"Never seen by this pipeline: {object_type} {names}"
            f"{' in account ' + account if account else ''}. Nothing was recorded. Check "
            "the id (ids are case-sensitive), or pass --force (force=True) to record the "
            "soft delete anyway."
        )
    return request
