"""`python -m stripe_emulator`: serve a (seeded) emulated Stripe account on 127.0.0.1."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .account import DEFAULT_API_VERSION, Account
from .server import EmulatorServer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; `--seed` takes `demo` or a number of promotion codes."""
    parser = argparse.ArgumentParser(
        prog="python -m stripe_emulator",
        description="A stateful Stripe API emulator (coupons, products, promotion codes, events).",
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
    parser.add_argument("--rate-limit", type=float, metavar="RPS", help="answer 429 beyond this")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of 500 answers")
    parser.add_argument("--drop-rate", type=float, default=0.0, help="share of dropped connections")
    parser.add_argument(
        "--event-delay", type=float, default=0.0, help="seconds before new events are listed"
    )
    parser.add_argument("--api-version", default=DEFAULT_API_VERSION, help="account API version")
    args = parser.parse_args(argv)
    if args.seed not in (None, "demo") and not args.seed.isdigit():
        parser.error(f"--seed takes 'demo' or a whole number, not {args.seed!r}")
    return args


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
        rate_limit=args.rate_limit,
        error_rate=args.error_rate,
        drop_rate=args.drop_rate,
    )
    account.set_event_delay(args.event_delay)
    return account


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
        f"{counts['promotion_code']} promotion codes. Ctrl-C stops it.",
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
