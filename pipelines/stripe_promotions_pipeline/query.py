"""The `query` subcommand: one SQL query against the destination, printed as a table."""

from __future__ import annotations

import csv
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from .config import PipelineConfig, make_pipeline
from .errors import RunError


def run_query(
    settings: PipelineConfig, sql: str, limit: int
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The query's column names and up to `limit` rows, read where a run writes."""
    if limit < 1:
        raise RunError(f"--limit must be at least 1, not {limit}.")
    client = make_pipeline(settings).sql_client()
    try:
        with client, client.execute_query(sql) as cursor:
            names = [str(column[0]) for column in cursor.description or []]
            return names, [tuple(row) for row in cursor.fetchmany(limit)]
    except RunError:
        raise
    except Exception as error:
        raise RunError(f"The query failed: {str(error).strip().splitlines()[0]}") from error


def print_query(settings: PipelineConfig, sql: str, limit: int, *, as_csv: bool = False) -> None:
    """Print the query's rows as a table, or CSV for other programs (and say when there were
    more than `limit`, on stderr)."""
    names, rows = run_query(settings, sql, limit + 1)
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(rows[:limit])
    else:
        table = Table(*names)
        for row in rows[:limit]:
            table.add_row(*("" if value is None else str(value) for value in row))
        Console().print(table)
    if len(rows) > limit:
        print(f"(first {limit} rows; --limit N shows more)", file=sys.stderr)
