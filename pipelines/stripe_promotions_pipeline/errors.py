"""Turn whatever stopped a run into one message saying what happened and what to do."""

from __future__ import annotations

import os
import re
from typing import Any

import duckdb
import psycopg2
import psycopg2.errors
from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    InvalidNativeValue,
    LookupTraces,
)
from dlt.common.configuration.specs.exceptions import InvalidConnectionString
from dlt.common.destination.exceptions import UnknownDestinationModule
from dlt.destinations.exceptions import DestinationConnectionError
from dlt.load.exceptions import LoadClientJobFailed, LoadClientJobTerminalRetry

from stripe_promotions import StripeApiError, StripeSourceError, StripeUnreachableError
from stripe_promotions.credentials import KEY_IN_TEXT
from stripe_promotions_transforms import TransformError

# A password in a connection URL: postgresql://user:secret@host/...
URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/:@\s]*:)[^@\s/]+@")

# What stopped a run, recognised by class (never by class name: a renamed class fails the import,
# not the recognition). tests/pipeline/test_errors_by_type.py builds one of each.
# dlt gave up on a load job for good: with the package aborted, or pending to be aborted.
TERMINAL_LOAD_FAILURES: tuple[type[BaseException], ...] = (
    LoadClientJobFailed,
    LoadClientJobTerminalRetry,
)
# Ctrl-C: Python's (dlt's SignalReceivedException is one), or DuckDB's when it cut a query short.
INTERRUPTIONS: tuple[type[BaseException], ...] = (KeyboardInterrupt, duckdb.InterruptException)
# The credentials do not parse: dlt's wrapper, and the connection-string error it wraps.
UNPARSABLE_CREDENTIALS: tuple[type[BaseException], ...] = (
    InvalidNativeValue,
    InvalidConnectionString,
)
# The destination cannot be opened or reached.
CONNECTION_FAILURES: tuple[type[BaseException], ...] = (
    DestinationConnectionError,  # dlt could not open its client (wraps the driver's error)
    duckdb.IOException,  # the DuckDB file cannot be opened, read or written (HTTP too)
    duckdb.ConnectionException,  # a closed DuckDB (or MotherDuck) connection
    # PostgreSQL's SQLSTATE class 08 and 53300, when the server says so in a session.
    psycopg2.errors.ConnectionException,
    psycopg2.errors.ConnectionDoesNotExist,
    psycopg2.errors.ConnectionFailure,
    psycopg2.errors.SqlclientUnableToEstablishSqlconnection,
    psycopg2.errors.SqlserverRejectedEstablishmentOfSqlconnection,
    psycopg2.errors.TooManyConnections,
)
# These exact classes, not their subclasses: psycopg2 raises the bare OperationalError when libpq
# cannot connect (no SQLSTATE: wrong password, no such database, nothing listening) or the server
# went away. Their subclasses are failures of a working connection (a deadlock, a statement
# timeout, a full disk, a DuckDB transaction conflict): not connection failures.
CONNECTION_REFUSALS: tuple[type[BaseException], ...] = (
    psycopg2.OperationalError,
    duckdb.OperationalError,
)


class RunError(Exception):
    """A run failed; `str()` is the message for the user."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; `str()` says what state things are in."""

    def __init__(self, phase: str, message: str) -> None:
        super().__init__(message)
        self.phase = phase


def is_terminal_load_failure(error: BaseException) -> bool:
    """Whether the destination refused a load job for good (dlt will not retry it)."""
    return any(isinstance(cause, TERMINAL_LOAD_FAILURES) for cause in root_causes(error))


def was_interrupted(error: BaseException) -> bool:
    """Whether Ctrl-C stopped the run (dlt wraps it, or turns it into SignalReceivedException)."""
    return any(isinstance(cause, INTERRUPTIONS) for cause in root_causes(error))


def is_unparsable_credentials(cause: BaseException) -> bool:
    """Whether this exception (not its causes: `explain` walks them) says the destination's
    credentials are not a connection string dlt understands."""
    return isinstance(cause, UNPARSABLE_CREDENTIALS)


def is_connection_failure(cause: BaseException) -> bool:
    """Whether this exception (not its causes: `explain` walks them) says the destination cannot
    be opened or reached."""
    return isinstance(cause, CONNECTION_FAILURES) or type(cause) in CONNECTION_REFUSALS


def interruption(phase: str, *, pending: bool, pipeline: Any) -> RunInterrupted:
    """Where an interrupted run stopped, what was kept, and what the next run does."""
    unchanged = "the current-state tables (schema stripe) are as the last complete run left them"
    if pending:
        where = f" in {pipeline.working_dir}" if pipeline is not None else ""
        partly = (
            " (stripe_raw may already hold part of it: the rest follows)"
            if phase in ("loading", "resuming")
            else ""
        )
        message = (
            f"Stopped while {phase}. The data extracted so far is kept{where}, with the cursors "
            f"that go with it; the next run loads it first{partly}, then continues. Until then "
            f"{unchanged}."
        )
    elif phase in ("starting", "waiting", "extracting"):
        message = (
            f"Stopped while {phase}. Nothing from this run was kept and no cursor moved: the "
            "destination is as the last complete run left it, and the next run starts from "
            "there."
        )
    else:
        message = (
            f"Stopped while {phase}. Everything extracted was loaded into stripe_raw, and "
            f"{unchanged} (they are rebuilt in one transaction). The next run, or "
            "`python pipelines/stripe_pipeline.py transform`, brings them up to date."
        )
    return RunInterrupted(phase, message)


def root_causes(error: BaseException) -> list[BaseException]:
    """The chain of causes, outermost first (dlt wraps what a resource raised)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__ or getattr(current, "exception", None)
    return chain


def explain(
    error: BaseException,
    *,
    destination: str,
    duckdb_file: str | None,
    pipelines_dir: str | None = None,
) -> str:
    """A message for the user: the most specific cause we recognise."""
    causes = root_causes(error)
    for cause in causes:
        if isinstance(cause, StripeSourceError | TransformError | RunError):
            return scrub(str(cause))
    if is_terminal_load_failure(error):
        folder = f" --pipelines-dir {pipelines_dir}" if pipelines_dir else ""
        reason = scrub(first_line(causes[-1])).rstrip(".")
        return (
            f"Loading into {destination} failed, and would fail the same way again: "
            f"{reason}. The load package stays pending (stripe_raw may "
            "hold part of it; the current-state tables are unchanged). To move on, abort it: "
            f"`dlt pipeline{folder} stripe_pipeline abort-packages` puts the cursors back to "
            "before it. Then run again; if the same data fails again, report this message."
        )
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
                "read-only. Close that connection, then run again."
            )
        if isinstance(cause, UnknownDestinationModule):
            return (
                f"Unknown destination {destination!r}: use duckdb (default), postgres, "
                "motherduck, snowflake or bigquery."
            )
        if isinstance(cause, ConfigFieldMissingException):
            return (
                f"Missing configuration for destination {destination!r}: "
                f"{scrub(', '.join(missing_fields(cause)))}. {credentials_hint(destination)}"
            )
    for cause in causes:
        if is_unparsable_credentials(cause):
            return (
                f"The {destination} credentials are not a connection string dlt understands. "
                f"{credentials_hint(destination)}"
            )
        if is_connection_failure(cause):
            reason = scrub(first_line(causes[-1]))  # the database's words, not dlt's wrapping
            return (
                f"Cannot connect to the {destination} destination: {reason.rstrip('.!')}"
                f"{connection_advice(reason, destination)} {credentials_hint(destination)}"
            )
    innermost = causes[-1]
    return scrub(f"{type(innermost).__name__}: {first_line(innermost)}")


EXAMPLE_CREDENTIALS = {
    "duckdb": "/path/to/stripe_pipeline.duckdb",
    "postgres": "postgresql://user:password@host:5432/database",
    "motherduck": "md:///database?token=...",
}
# What a refused connection means, by the database's words.
DUCKDB_ADVICE = (
    ("no such file or directory", ": the folder for the DuckDB file does not exist."),
    ("not a valid duckdb database", ": that file is not a DuckDB database; name another."),
    ("is a directory", ": that path is a folder; name a file in it."),
    ("permission denied", ": this user may not write there."),
)
CONNECTION_ADVICE = (
    ("password authentication failed", ": the password is wrong for that user."),
    ("no password supplied", ": the server wants a password and none was given."),
    ('role "', ": that user does not exist on the server."),
    ('database "', ": that database does not exist; create it or name another."),
    ("could not translate host name", ": the host name does not resolve."),
    ("connection refused", ": nothing listens at that host and port."),
    ("no such file or directory", ": no server socket at that host or socket folder."),
    ("timeout expired", ": the server did not answer in time (host, port, firewall?)."),
)


def connection_advice(text: str, destination: str) -> str:
    """What the refusal means, or just the end of the sentence."""
    lowered = text.lower()
    known = DUCKDB_ADVICE if destination in ("duckdb", "motherduck") else CONNECTION_ADVICE
    for words, advice in known:
        if words in lowered:
            return advice
    return "."


def credentials_hint(destination: str) -> str:
    """Where a destination's credentials are set, with an example for the common ones."""
    variable = f"DESTINATION__{destination.upper()}__CREDENTIALS"
    example = EXAMPLE_CREDENTIALS.get(destination)
    shown = f"{variable}={example}" if example else variable
    return f"Check {shown} (or [destination.{destination}] credentials in .dlt/secrets.toml)."


def missing_fields(error: ConfigFieldMissingException) -> list[str]:
    """Dotted names of the missing settings: `credentials.password`, not dlt's lookup dump."""
    names: list[str] = []

    def walk(prefix: str, traces: dict[str, Any]) -> None:
        for field, field_traces in traces.items():
            nested = [t for t in field_traces if isinstance(t, LookupTraces)]
            for trace in nested:
                walk(f"{prefix}{field}.", trace.traces)
            if not nested:
                names.append(prefix + field)

    walk("", error.traces)
    return list(dict.fromkeys(names)) or [error.spec_name]


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
    text = KEY_IN_TEXT.sub(lambda m: m.group(0)[:8] + "…", text)
    return URL_PASSWORD.sub(r"\1***@", text)


def is_permanent(error: BaseException) -> bool:
    """A failure retrying cannot fix (a key Stripe refuses, missing configuration); the network,
    Stripe's or the destination's hiccups are worth an orchestrator's next attempt."""
    for cause in root_causes(error):
        if isinstance(cause, StripeUnreachableError | StripeApiError):
            return False
        if isinstance(cause, StripeSourceError | ConfigFieldMissingException):
            return True
    return False
