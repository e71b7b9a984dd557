"""The short summary printed at the end of a run."""

from __future__ import annotations

from .runner import RunResult

TRY_QUERY = (
    "SELECT status, COUNT(*) AS codes FROM stripe.promotion_codes "
    "GROUP BY status ORDER BY codes DESC"
)
MODES = {
    "incremental": "Incremental sync",
    "sync_all": "Sync all",
    "sync_by_ids": "Sync by ids",
    "sync_batch": "Sync batch",
    "soft_delete": "Soft delete",
}


def summary(result: RunResult) -> str:
    """Per object type: new, updated, deleted; requests, time, where the data is, a query."""
    stats = result.stats
    accounts = f" for {len(stats.accounts):,} accounts" if len(stats.accounts) > 1 else ""
    lines = [
        f"{MODES[result.request.mode]} done in {result.seconds:.1f} s{accounts}: "
        f"{stats.requests:,} Stripe API requests ({stats.retries:,} retried).",
        f"  {'':<16}{'new':>8}{'updated':>9}{'deleted':>9}{'rows':>9}{'recomputed':>11}",
    ]
    for table in result.tables:
        lines.append(
            f"  {table.table:<16}{table.new:>8,}{table.updated:>9,}{table.deleted:>9,}"
            f"{table.rows:>9,}{table.recomputed:>11,}"
        )
    lines += [f"Note: {note}" for note in result.notes]
    if stats.failed_accounts:
        lines.append(
            f"Failed: {len(stats.failed_accounts):,} of {len(stats.accounts):,} accounts; the "
            "others loaded. Their next run resumes where they stopped:"
        )
        lines += [f"  {account}: {why}" for account, why in sorted(stats.failed_accounts.items())]
    lines.append(f"Data: {result.location}")
    lines.append(f"Try:  {query_command(result.destination)}")
    return "\n".join(lines)


def query_command(destination: str) -> str:
    """The command line that queries what this run wrote (no other tool needed)."""
    option = "" if destination == "duckdb" else f" --destination {destination}"
    return f'python pipelines/stripe_pipeline.py{option} query "{TRY_QUERY}"'
