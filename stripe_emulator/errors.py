"""Stripe's error shape, raised by the models and rendered by the HTTP layer."""

from __future__ import annotations

from typing import Any


class StripeError(Exception):
    """An error Stripe would answer with: HTTP status plus `{"error": {...}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        """The JSON body Stripe sends for this error."""
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}


def invalid(message: str, param: str | None = None, code: str | None = None) -> StripeError:
    """A 400 `invalid_request_error`."""
    return StripeError(400, message, code=code or "parameter_invalid", param=param)


def missing(kind: str, object_id: str, param: str | None = "id") -> StripeError:
    """Stripe's 404 for an unknown id."""
    return StripeError(404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


def unknown_parameter(name: str) -> StripeError:
    """Stripe's 400 for a parameter the endpoint does not take."""
    return StripeError(
        400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name
    )
