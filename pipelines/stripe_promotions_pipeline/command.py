"""The command: `stripe_pipeline.py [--destination NAME] [--api-base URL] [SUBCOMMAND ...]`.

Installed as the console script `stripe-pipeline`; `python pipelines/stripe_pipeline.py` runs
the same `main`. Without a subcommand it runs the incremental load and the transforms.
Subcommands: sync-all, sync-ids, sync-batch, soft-delete (the four verbs), transform, query,
demo. Exit code 0 only on success; PARTLY_FAILED when some accounts failed and the others
loaded (Stripe Connect).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from stripe_promotions import StripeSourceError, SyncRequest
from stripe_promotions.batch import read_batch_file, validate_batch
from stripe_promotions.settings import OBJECT_TYPES

from .config import PipelineConfig
from .errors import RunError, RunInterrupted
from .query import print_query
from .runner import run_sync, run_transforms_only
from .summary import TRY_QUERY, summary

TYPES = tuple(OBJECT_TYPES)
# Exit codes: 1 a failure (nothing new loaded), 3 some accounts failed and the others loaded.
FAILED, PARTLY_FAILED, INTERRUPTED = 1, 3, 130
DESCRIPTION = """\
Load Stripe coupons, products and promotion codes, with their updates and deletions, into
DuckDB (default) or a warehouse, then build the current-state tables stripe.coupons,
stripe.products and stripe.promotion_codes.

Without a subcommand: an incremental load (objects created since the last run, and every
change and deletion from Stripe's events), then the transforms. The first run loads
everything."""
EPILOG = """\
The Stripe API key comes from STRIPE_API_KEY, or api_key under [sources.stripe] in
.dlt/secrets.toml (SOURCES__STRIPE__API_KEY): a secret key (sk_live_/sk_test_) or a
restricted key with read access to coupons, products, promotion codes and events.
Global options may come before or after the subcommand. Stripe Connect platforms pick
accounts with --account (repeatable) or --all-accounts, or sources.stripe.accounts
(SOURCES__STRIPE__ACCOUNTS): absent, the key's own account.

Exit codes: 0 success; 1 failure (nothing new loaded); 3 partly failed: some accounts failed
(the summary names them and why), the others loaded; 130 interrupted.

examples:
  stripe_pipeline.py                                  incremental load into stripe_pipeline.duckdb
  stripe_pipeline.py --destination postgres sync-all  list everything; flag what is gone
  stripe_pipeline.py sync-ids --type coupon SUMMER25  re-read one coupon
  stripe_pipeline.py --all-accounts                   the platform and every connected account
  stripe_pipeline.py query "SELECT * FROM stripe.coupons LIMIT 5"
  stripe_pipeline.py demo                             try it against the bundled emulator"""
TYPE_HELP = f"object type: {', '.join(TYPES[:-1])} or {TYPES[-1]}"


def global_options(suppress: bool) -> argparse.ArgumentParser:
    """The options every subcommand takes too (after it, they keep what was given before)."""
    default = argparse.SUPPRESS if suppress else None
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("global options")
    group.add_argument(
        "--destination",
        default=default if suppress else "duckdb",
        metavar="NAME",
        help="dlt destination: duckdb (default), postgres, motherduck, snowflake, bigquery",
    )
    group.add_argument(
        "--api-base",
        default=default,
        metavar="URL",
        help="Stripe API base URL (default https://api.stripe.com, or SOURCES__STRIPE__API_BASE)",
    )
    group.add_argument(
        "--account",
        action="append",
        dest="accounts",
        default=default,
        metavar="ID",
        help="a connected account (acct_...) to read; repeatable (default: "
        "sources.stripe.accounts, or the key's own account)",
    )
    group.add_argument(
        "--all-accounts",
        action="store_true",
        default=default if suppress else False,
        help="the key's own account and every connected account (Stripe Connect)",
    )
    group.add_argument(
        "--quiet",
        action="store_true",
        default=default if suppress else False,
        help="no progress display",
    )
    return options


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Global options (before or after the subcommand), then an optional subcommand."""
    parser = argparse.ArgumentParser(
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[global_options(suppress=False)],
    )
    commands = parser.add_subparsers(
        dest="command",
        metavar="[SUBCOMMAND]",
        title="subcommands (optional; none: incremental load)",
    )
    inherit = [global_options(suppress=True)]

    def command(name: str, summary: str, details: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, description=details, parents=inherit)

    sync_all = command(
        "sync-all",
        "list every object; objects no longer listed are flagged deleted",
        "List every object of the chosen types (default: all three) and flag the ones Stripe "
        "no longer lists as deleted; then the transforms.",
    )
    sync_all.add_argument(
        "--type",
        action="append",
        choices=TYPES,
        dest="types",
        metavar="T",
        help=f"{TYPE_HELP} (repeatable; default: sources.stripe.object_types, or all three)",
    )
    sync_ids = command(
        "sync-ids",
        "re-read objects by id",
        "Retrieve objects by id. An id Stripe answers 404 for is flagged deleted if the "
        "pipeline has seen it before; an id it never saw is reported and nothing is recorded.",
    )
    sync_ids.add_argument("--type", required=True, choices=TYPES, metavar="T", help=TYPE_HELP)
    sync_ids.add_argument("ids", nargs="+", metavar="ID", help="Stripe ids, e.g. SUMMER25")
    sync_batch = command(
        "sync-batch",
        "load objects or saved webhook events from a file",
        "Load a batch from a file: a JSON array, a Stripe list object or JSON lines of objects "
        "or saved webhook events. The whole batch is checked first, then loaded whole or not "
        "at all.",
    )
    sync_batch.add_argument("--type", required=True, choices=TYPES, metavar="T", help=TYPE_HELP)
    sync_batch.add_argument("file", metavar="FILE", help="JSON array, Stripe list or JSON lines")
    soft = command(
        "soft-delete",
        "flag ids deleted without touching Stripe",
        "Flag objects deleted in the current-state tables without touching Stripe; a later "
        "observation of the object clears the flag. Ids the pipeline never saw are refused "
        "unless --force is given.",
    )
    soft.add_argument("--type", required=True, choices=TYPES, metavar="T", help=TYPE_HELP)
    soft.add_argument("ids", nargs="+", metavar="ID", help="Stripe ids")
    soft.add_argument("--reason", help="why (kept with the deletion, as deletion_reason)")
    soft.add_argument("--force", action="store_true", help="also record ids the pipeline never saw")
    transform = command(
        "transform",
        "bring the current-state and history tables up to date only",
        "Bring stripe.coupons, stripe.products, stripe.promotion_codes and their _history "
        "tables up to date with what is already loaded, without asking Stripe: the objects "
        "loaded since the last run are recomputed (every run does this after its load).",
    )
    transform.add_argument(
        "--full",
        action="store_true",
        help="rebuild every object from all its observations (gives the same tables)",
    )
    query = command(
        "query",
        "run a SQL query against the destination and print the result",
        "Run one SQL query against the destination (the same one a run writes) and print "
        "the rows: no other tool needed.",
    )
    query.add_argument(
        "sql", nargs="?", default=TRY_QUERY, metavar="SQL", help=f"default: {TRY_QUERY}"
    )
    query.add_argument(
        "--limit", type=int, default=50, metavar="N", help="rows to print (default 50)"
    )
    query.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    command(
        "demo",
        "try it: seed the bundled emulator, load, change, load again",
        "Start the bundled Stripe emulator with a demo account, load it into "
        "stripe_demo.duckdb, change things in Stripe, load again and show the tables.",
    )
    return parser.parse_args(argv)


def request_for(args: argparse.Namespace) -> SyncRequest:
    """The run a subcommand asks for."""
    if args.command == "sync-all":
        return SyncRequest("sync_all", tuple(dict.fromkeys(args.types or ())))
    if args.command == "sync-ids":
        return SyncRequest("sync_by_ids", (args.type,), ids=tuple(args.ids))
    if args.command == "sync-batch":
        items = validate_batch(args.type, read_batch_file(args.file))
        return SyncRequest("sync_batch", (args.type,), items=tuple(items))
    if args.command == "soft-delete":
        return SyncRequest(
            "soft_delete", (args.type,), ids=tuple(args.ids), reason=args.reason, force=args.force
        )
    return SyncRequest()


def demo() -> Callable[[PipelineConfig], None]:
    """The demo, which needs the emulator's dependencies (the `emulator` extra)."""
    try:
        from .demo import run_demo
    except ImportError as missing:
        raise RunError(
            f"The demo needs the bundled emulator's dependencies ({missing.name} is missing): "
            "pip install 'stripe-promotions-pipeline[emulator]'."
        ) from None
    return run_demo


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; print a summary, or a message saying what to fix."""
    args = parse_args(argv)
    if args.all_accounts and args.accounts:
        print("error: use --account or --all-accounts, not both.", file=sys.stderr)
        return FAILED
    accounts: tuple[str, ...] | str | None = "all" if args.all_accounts else None
    if args.accounts:
        accounts = tuple(dict.fromkeys(args.accounts))
    settings = PipelineConfig(
        destination=args.destination,
        api_base=args.api_base,
        progress=not args.quiet,
        accounts=accounts,
    )
    try:
        if args.command == "demo":
            demo()(settings)
        elif args.command == "transform":
            for table in run_transforms_only(settings, full=args.full):
                print(
                    f"stripe.{table.table}: {table.rows:,} rows "
                    f"({table.deleted_rows:,} flagged deleted), {table.recomputed:,} recomputed"
                )
        elif args.command == "query":
            print_query(settings, args.sql, args.limit, as_csv=args.csv)
        else:
            result = run_sync(request_for(args), settings)
            print(summary(result))
            if result.partly_failed:
                return PARTLY_FAILED
    except (RunError, StripeSourceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return FAILED
    except RunInterrupted as interrupted:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return INTERRUPTED
    except KeyboardInterrupt:
        print("interrupted before the run started: nothing was changed.", file=sys.stderr)
        return INTERRUPTED
    return 0
