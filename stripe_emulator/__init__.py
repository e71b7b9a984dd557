"""A stateful Stripe API emulator for coupons, products, promotion codes and events.

`Account` holds Stripe's state and rules in plain Python; `serve()` puts it behind HTTP on
127.0.0.1 for the official `stripe` SDK.
"""

from .account import DEFAULT_API_VERSION, Account
from .errors import StripeError
from .server import EmulatorServer, serve

__all__ = ["DEFAULT_API_VERSION", "Account", "EmulatorServer", "StripeError", "serve"]
