"""The command: `python pipelines/stripe_pipeline.py [--destination NAME] [--api-base URL] [SUB]`.

Without a subcommand it runs the incremental load and the transforms. Subcommands: sync-all,
sync-ids, sync-batch, soft-delete (the four verbs), transform, demo. Exit code 0 only on success.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

# Arrow picks its allocator when first imported. Its default (mimalloc) keeps freed pages;
# the system allocator peaked ~60 MB lower at the same speed (benchmarks/RESULTS.md).
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

from sources.stripe_promotions import StripeSourceError, SyncRequest
from sources.stripe_promotions.batch import read_batch_file, validate_batch
from stripe_sync import RunError, Settings, run_sync, run_transforms_only, summary
from stripe_sync.demo import run_demo
from stripe_sync.errors import RunInterrupted
from stripe_sync.tuning import skip_airflow_secrets

TYPES = ("coupon", "product", "promotion_code")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Global options first, then an optional subcommand."""
    parser = argparse.ArgumentParser(
        prog="stripe_pipeline.py",
        description="Load Stripe coupons, products and promotion codes, with updates and "
        "deletions, then build the current-state tables (schema stripe).",
    )
    parser.add_argument(
        "--destination",
        default="duckdb",
        metavar="NAME",
        help="dlt destination: duckdb (default), postgres, motherduck, snowflake, bigquery",
    )
    parser.add_argument(
        "--api-base", metavar="URL", help="Stripe API base URL (default https://api.stripe.com)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    commands = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    sync_all = commands.add_parser("sync-all", help="list every object; absent ones are deleted")
    sync_all.add_argument(
        "--type",
        action="append",
        choices=TYPES,
        dest="types",
        help="object type (repeatable; default: all three)",
    )
    sync_ids = commands.add_parser("sync-ids", help="retrieve objects by id")
    sync_ids.add_argument("--type", required=True, choices=TYPES)
    sync_ids.add_argument("ids", nargs="+", metavar="ID")
    sync_batch = commands.add_parser(
        "sync-batch", help="load objects or webhook events from a file"
    )
    sync_batch.add_argument("--type", required=True, choices=TYPES)
    sync_batch.add_argument("file", metavar="FILE", help="JSON array, Stripe list or JSON lines")
    soft = commands.add_parser("soft-delete", help="mark ids deleted without touching Stripe")
    soft.add_argument("--type", required=True, choices=TYPES)
    soft.add_argument("ids", nargs="+", metavar="ID")
    soft.add_argument("--reason", help="why (kept in stripe_raw.deletions)")
    commands.add_parser("transform", help="rebuild the current-state tables only")
    commands.add_parser("demo", help="seed the bundled emulator, load, change, load again")
    return parser.parse_args(argv)


def request_for(args: argparse.Namespace) -> SyncRequest:
    """The run a subcommand asks for."""
    if args.command == "sync-all":
        return SyncRequest("full", tuple(dict.fromkeys(args.types or TYPES)))
    if args.command == "sync-ids":
        return SyncRequest("ids", (args.type,), ids=tuple(args.ids))
    if args.command == "sync-batch":
        items = validate_batch(args.type, read_batch_file(args.file))
        return SyncRequest("batch", (args.type,), items=tuple(items))
    if args.command == "soft-delete":
        return SyncRequest("soft_delete", (args.type,), ids=tuple(args.ids), reason=args.reason)
    return SyncRequest()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; print a summary, or a message saying what to fix."""
    args = parse_args(argv)
    skip_airflow_secrets()
    settings = Settings(
        destination=args.destination, api_base=args.api_base, progress=not args.quiet
    )
    try:
        if args.command == "demo":
            run_demo(settings)
        elif args.command == "transform":
            for table in run_transforms_only(settings):
                print(f"stripe.{table.table}: {table.rows:,} rows ({table.deleted:,} deleted)")
        else:
            print(summary(run_sync(request_for(args), settings)))
    except (RunError, StripeSourceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except RunInterrupted as interrupted:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted before the run started: nothing was changed.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
