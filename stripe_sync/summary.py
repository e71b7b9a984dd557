"""The short summary printed at the end of a run."""

from __future__ import annotations

from .runner import RunResult

TRY_QUERY = (
    "SELECT status, COUNT(*) AS codes FROM stripe.promotion_codes "
    "GROUP BY status ORDER BY codes DESC"
)
MODES = {
    "incremental": "Incremental sync",
    "full": "Sync all",
    "ids": "Sync by ids",
    "batch": "Sync batch",
    "soft_delete": "Soft delete",
}


def summary(result: RunResult) -> str:
    """Per object type: new, updated, deleted; requests, time, where the data is, a query."""
    stats = result.stats
    retries = stats.api.retries if stats.api else 0
    lines = [
        f"{MODES[result.request.mode]} done in {result.seconds:.1f} s: "
        f"{stats.requests:,} Stripe API requests ({retries:,} retried).",
        f"  {'':<16}{'new':>8}{'updated':>9}{'deleted':>9}{'rows':>9}",
    ]
    for table in result.tables:
        lines.append(
            f"  {table.table:<16}{table.new:>8,}{table.updated:>9,}{table.deleted:>9,}"
            f"{table.rows:>9,}"
        )
    lines += [f"Note: {note}" for note in result.notes]
    lines.append(f"Data: {result.location}")
    if result.destination == "duckdb":
        lines.append(f'Try:  duckdb -readonly {result.location} "{TRY_QUERY}"')
    else:
        lines.append(f"Try:  {TRY_QUERY};")
    return "\n".join(lines)
