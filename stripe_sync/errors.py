"""Turn whatever stopped a run into one message saying what happened and what to do."""

from __future__ import annotations

import os
import re

from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.destination.exceptions import UnknownDestinationModule

from sources.stripe_promotions import StripeSourceError
from transforms import TransformError

KEY_PATTERN = re.compile(r"\b(sk|rk)_(test|live)_[0-9A-Za-z]{4,}")


class RunError(Exception):
    """A run failed; `str()` is the message for the user."""


def root_causes(error: BaseException) -> list[BaseException]:
    """The chain of causes, outermost first (dlt wraps what a resource raised)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__ or getattr(current, "exception", None)
    return chain


def explain(error: BaseException, *, destination: str, duckdb_file: str | None) -> str:
    """A message for the user: the most specific cause we recognise."""
    causes = root_causes(error)
    for cause in causes:
        if isinstance(cause, StripeSourceError | TransformError | RunError):
            return scrub(str(cause))
    for cause in causes:
        text = str(cause)
        if "Could not set lock on file" in text or "Conflicting lock" in text:
            where = duckdb_file or "the DuckDB file"
            holder = re.search(r"\(PID (\d+)\)", text)
            return (
                f"{where} is open in another process"
                + (f" (PID {holder.group(1)})" if holder else "")
                + ": a notebook, a DuckDB shell or another pipeline run. DuckDB lets only one "
                "process write, and only while no other process has the file open, even "
                "read-only. Close that connection, then run again: nothing is lost, the next "
                "run loads what this one extracted."
            )
        if isinstance(cause, UnknownDestinationModule):
            return (
                f"Unknown destination {destination!r}: use duckdb (default), postgres, "
                "motherduck, snowflake or bigquery."
            )
        if isinstance(cause, ConfigFieldMissingException):
            return scrub(
                f"Missing configuration for destination {destination!r}: {cause}. Set its "
                f"credentials, e.g. DESTINATION__{destination.upper()}__CREDENTIALS."
            )
    for cause in causes:
        name = type(cause).__name__
        if "connection" in name.lower() or "OperationalError" in name:
            return scrub(
                f"Cannot connect to the {destination} destination: {first_line(cause)}. Check "
                f"DESTINATION__{destination.upper()}__CREDENTIALS (or .dlt/secrets.toml)."
            )
    innermost = causes[-1]
    return scrub(f"{type(innermost).__name__}: {first_line(innermost)}")


def first_line(error: BaseException) -> str:
    """The first meaningful line of an error message."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__


def scrub(text: str) -> str:
    """Never print an API key: the configured ones and anything shaped like one."""
    for name in ("STRIPE_API_KEY", "SOURCES__STRIPE__API_KEY"):
        key = os.environ.get(name)
        if key and len(key) > 8:
            text = text.replace(key, key[:8] + "…")
    return KEY_PATTERN.sub(lambda m: m.group(0)[:8] + "…", text)
