"""`python -m stripe_emulator`: serve a (seeded) emulated Stripe account on 127.0.0.1."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from .account import DEFAULT_API_VERSION, Account
from .controls import help_text
from .rate_limits import CONNECT_BUDGETS, DEFAULTS, OPERATION_NAME
from .seed import PRESETS
from .server import EmulatorServer

DESCRIPTION = """\
A stateful Stripe API emulator (coupons, products, promotion codes, events) on 127.0.0.1,
for the official stripe SDK: stripe.StripeClient(KEY, base_addresses={"api": URL}).

API keys: any well-formed key works, with full access and the same objects for all:
sk_test_..., sk_live_..., rk_test_... or rk_live_... followed by 8 to 247 letters or digits
(e.g. sk_test_emulator0123). A missing or malformed key (pk_..., sk_foo) is a 401. The
key's mode picks its rate limits: test keys share --test-rate-limit, live keys
--live-rate-limit, and each mode has its own --operation-rate-limit per operation. Restrict
(403) or revoke (401) a key with POST /_emulator/keys.

Connect: the key's account is a platform with --connected-accounts N accounts of its own;
a request with the header Stripe-Account: acct_... (the SDK's stripe_account option) or
Stripe-Context: acct_... acts on that connected account. GET /_emulator/connected_accounts
lists them; an unknown, disconnected or deleted one answers Stripe's 403 account_invalid."""


def epilog() -> str:
    """The controls, from the one table in `controls.py`."""
    return (
        "controls: HTTP on the same port, JSON in and out, no key, never rate-limited;\n"
        "GET /_emulator lists them with each body's names, types and an example.\n" + help_text()
    )


def positive(text: str) -> float:
    """A number of requests per second above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def override(text: str) -> tuple[str, float]:
    """`'GET /v1/promotion_codes=50'`: one operation's own limit."""
    operation, equals, rps = text.rpartition("=")
    if not equals or not OPERATION_NAME.match(operation.strip()):
        raise argparse.ArgumentTypeError(
            f"expected 'METHOD /v1/path=RPS' such as 'GET /v1/promotion_codes=50', not {text!r}"
        )
    return operation.strip(), positive(rps)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; `--seed` takes `demo` or a number of promotion codes."""
    parser = argparse.ArgumentParser(
        prog="python -m stripe_emulator",
        description=DESCRIPTION,
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=12111, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument(
        "--seed",
        metavar="demo|N",
        help="seed the demo dataset, or N promotion codes with N/10 coupons and products",
    )
    parser.add_argument("--coupons", type=int, help="with --seed N: number of coupons")
    parser.add_argument("--products", type=int, help="with --seed N: number of products")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
    parser.add_argument(
        "--latency-max-ms", type=float, help="random latency between --latency-ms and this"
    )
    limits = parser.add_argument_group(
        "rate limits",
        "Stripe's limits, on by default: a request must fit both the account-wide limit of\n"
        "its key's mode and the limit of its operation (method + path template, e.g.\n"
        "'GET /v1/promotion_codes/{id}'), each over any one-second window.",
    )
    for setting, meaning in (
        ("live", "account-wide requests per second with live keys"),
        ("test", "account-wide requests per second with test keys"),
        ("operation", "requests per second of each operation, per key mode"),
    ):
        limits.add_argument(
            f"--{setting}-rate-limit",
            type=positive,
            default=DEFAULTS[setting],
            metavar="RPS",
            help=f"{meaning} (default: %(default)g)",
        )
    limits.add_argument(
        "--operation-rate-limit-override",
        type=override,
        action="append",
        default=[],
        metavar="'OPERATION=RPS'",
        help="another limit for one operation, e.g. 'GET /v1/promotion_codes=50' (repeatable)",
    )
    limits.add_argument(
        "--no-rate-limits", action="store_true", help="no 429 answers at all (kinder than Stripe)"
    )
    limits.add_argument(
        "--rate-limit-count-rejected",
        action=argparse.BooleanOptionalAction,
        default=DEFAULTS["count_rejected"],
        help="whether a request answered 429 still counts in the windows (default: it does, "
        "so a client that keeps hammering stays limited)",
    )
    limits.add_argument(
        "--rate-limit-connect-budget",
        choices=CONNECT_BUDGETS,
        default="platform",
        help="whose limits a request for a connected account (Stripe-Account) draws on: the "
        "platform's, shared by every request made with its key (default; Stripe is silent), "
        "or each connected account's own",
    )
    connect = parser.add_argument_group("Connect")
    connect.add_argument(
        "--connected-accounts",
        type=count,
        default=0,
        metavar="N",
        help="connect N accounts to the platform, each an account of its own",
    )
    connect.add_argument(
        "--connected-seed",
        metavar="demo|N",
        help="seed each connected account with the demo dataset or N promotion codes (default: "
        "a tenth of --seed: 6 codes with --seed demo, N/10 with --seed N; none without --seed)",
    )
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of 500 answers")
    parser.add_argument("--drop-rate", type=float, default=0.0, help="share of dropped connections")
    parser.add_argument(
        "--event-delay", type=float, default=0.0, help="seconds before new events are listed"
    )
    parser.add_argument("--api-version", default=DEFAULT_API_VERSION, help="account API version")
    parser.add_argument(
        "--same-second-order",
        choices=("insertion", "shuffled"),
        default="insertion",
        help="order of objects created within one second: newest inserted first, or a stable "
        "random order (Stripe documents none)",
    )
    args = parser.parse_args(argv)
    for flag, value in (("--seed", args.seed), ("--connected-seed", args.connected_seed)):
        if value not in (None, "demo") and not value.isdigit():
            parser.error(f"{flag} takes 'demo' or a whole number, not {value!r}")
    return args


def count(text: str) -> int:
    """A whole number of things, zero or more."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    return int(text)


def connected_seed(args: argparse.Namespace) -> dict[str, Any]:
    """How to seed each connected account: `--connected-seed`, else a tenth of `--seed`."""
    chosen = args.connected_seed
    if chosen is None and args.seed is not None:
        codes = PRESETS["demo"]["promotion_codes"] if args.seed == "demo" else int(args.seed)
        chosen = str(codes // 10)
    if chosen is None or chosen == "0":
        return {}
    return {"preset": "demo"} if chosen == "demo" else {"promotion_codes": int(chosen)}


def build_account(args: argparse.Namespace) -> Account:
    """An account configured and seeded as the options say."""
    account = Account(api_version=args.api_version)
    if args.seed == "demo":
        account.seed(preset="demo")
    elif args.seed is not None:
        account.seed(promotion_codes=int(args.seed), coupons=args.coupons, products=args.products)
    account.faults.configure(
        latency_ms=args.latency_ms,
        latency_max_ms=args.latency_max_ms,
        error_rate=args.error_rate,
        drop_rate=args.drop_rate,
    )
    account.rate_limits.configure(
        enabled=not args.no_rate_limits,
        live=args.live_rate_limit,
        test=args.test_rate_limit,
        operation=args.operation_rate_limit,
        operations=dict(args.operation_rate_limit_override),
        count_rejected=args.rate_limit_count_rejected,
    )
    account.rate_limits.set_connect_budget(args.rate_limit_connect_budget)
    account.set_event_delay(args.event_delay)
    account.set_same_second_order(args.same_second_order)
    seed = connected_seed(args)
    for number in range(args.connected_accounts):
        connected = account.add_connected_account(email=f"shop{number + 1}@example.com")
        if seed:  # each its own data: another random seed
            connected.seed(**seed, seed=number + 2)
    return account


def describe_limits(account: Account) -> str:
    """The rate limits in force, for the start-up line."""
    limits = account.rate_limits
    if not limits.enabled:
        return "rate limits off"
    per_s = {
        name: "none" if rps is None else f"{rps:g}/s"
        for name, rps in (
            ("live", limits.live),
            ("test", limits.test),
            ("operation", limits.operation),
        )
    }
    return (
        f"rate limits {per_s['live']} live, {per_s['test']} test, {per_s['operation']} per "
        f"operation{' (with overrides)' if limits.operations else ''}"
    )


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted."""
    args = parse_args(argv)
    account = build_account(args)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        server = EmulatorServer(account, args.port).start()
    except OSError as error:
        print(f"cannot listen on 127.0.0.1:{args.port}: {error.strerror}", file=sys.stderr)
        return 1
    counts = {kind: len(account.state(kind)) for kind in ("coupon", "product", "promotion_code")}
    print(
        f"Stripe emulator on {server.url} (API version {account.api_version}): "
        f"{counts['coupon']} coupons, {counts['product']} products, "
        f"{counts['promotion_code']} promotion codes; "
        f"{len(account.connected_accounts())} connected accounts; {describe_limits(account)}. "
        "Ctrl-C stops it.",
        flush=True,
    )
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
