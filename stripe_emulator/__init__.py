"""A stateful Stripe API emulator for coupons, products, promotion codes and events.

`Account` holds Stripe's state and rules in plain Python (a Connect platform once it has
`ConnectedAccount`s); `serve()` puts it behind HTTP on 127.0.0.1 for the official `stripe` SDK.
"""

from .account import DEFAULT_API_VERSION, Account, ConnectedAccount
from .errors import StripeError
from .server import EmulatorServer, serve

__all__ = [
    "DEFAULT_API_VERSION",
    "Account",
    "ConnectedAccount",
    "EmulatorServer",
    "StripeError",
    "serve",
]
