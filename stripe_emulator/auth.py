"""API keys: which are well formed, revoked, or restricted to reading."""

from __future__ import annotations

import re
from typing import Literal

from .errors import StripeError

KEY_FORMAT = re.compile(r"^(sk|rk)_(test|live)_[0-9A-Za-z]{8,247}$")
Access = Literal["full", "read_only", "none", "revoked"]


def redact(key: str) -> str:
    """How Stripe shows a key in messages: prefix and last four characters."""
    prefix = key[:8] if KEY_FORMAT.match(key) else ""
    return f"{prefix}{'*' * 12}{key[-4:]}" if len(key) > 4 else "****"


class KeyRing:
    """Every well-formed key works with full access unless a test says otherwise."""

    def __init__(self) -> None:
        self._access: dict[str, Access] = {}

    def set_access(self, key: str, access: Access) -> None:
        """Revoke a key, or restrict it to reading or to nothing."""
        if access not in ("full", "read_only", "none", "revoked"):
            raise ValueError(f"unknown access: {access}")
        self._access[key] = access

    def reset(self) -> None:
        """Every key back to full access."""
        self._access.clear()

    def check(self, key: str | None, *, write: bool, resource: str) -> None:
        """Stripe's 401 for a missing, malformed or revoked key; 403 for missing permission."""
        if not key:
            raise StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth "
                "(e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        if not KEY_FORMAT.match(key) or self._access.get(key) == "revoked":
            raise StripeError(401, f"Invalid API Key provided: {redact(key)}")
        access = self._access.get(key, "full")
        if access == "none" or (access == "read_only" and write):
            permission = f"rak_{resource}_{'write' if write else 'read'}"
            raise StripeError(
                403,
                f"The provided key '{redact(key)}' does not have the required permissions for "
                f"this endpoint. Having the '{permission}' permission would allow this request "
                "to continue.",
            )
