"""errors.py recognises dlt's and the drivers' failures by class, not by class name.

Each test imports a recognised class from where errors.py imports it (a class dlt, DuckDB or
psycopg2 renames or moves fails here, at import or attribute lookup), builds one the way the
library raises it (wrapped as dlt wraps it; from the real library call where that is cheap), and
checks the classifiers recognise it, while a lookalike (a class with the same name and module
that is not the library's) is not recognised: the matching is by type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar, cast

import dlt
import duckdb
import psycopg2
import psycopg2.errors
import pytest
from dlt.common.configuration import resolve_configuration
from dlt.common.configuration.exceptions import InvalidNativeValue
from dlt.common.configuration.specs.exceptions import InvalidConnectionString
from dlt.common.destination import Destination
from dlt.common.exceptions import SignalReceivedException
from dlt.common.pipeline import SupportsPipeline
from dlt.destinations.exceptions import (
    DatabaseTerminalException,
    DatabaseTransientException,
    DestinationConnectionError,
)
from dlt.destinations.impl.postgres.configuration import PostgresCredentials
from dlt.load.exceptions import LoadClientJobFailed, LoadClientJobTerminalRetry
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.pipeline.typing import TPipelineStep

from stripe_promotions_pipeline.errors import (
    CONNECTION_FAILURES,
    CONNECTION_REFUSALS,
    INTERRUPTIONS,
    TERMINAL_LOAD_FAILURES,
    UNPARSABLE_CREDENTIALS,
    explain,
    is_connection_failure,
    is_terminal_load_failure,
    is_unparsable_credentials,
    root_causes,
    was_interrupted,
)

E = TypeVar("E", bound=BaseException)

LOAD_ID = "1767225600.123456"
DUCKDB_HINT = (
    "Check DESTINATION__DUCKDB__CREDENTIALS=/path/to/stripe_pipeline.duckdb "
    "(or [destination.duckdb] credentials in .dlt/secrets.toml)."
)
POSTGRES_HINT = (
    "Check DESTINATION__POSTGRES__CREDENTIALS=postgresql://user:password@host:5432/database "
    "(or [destination.postgres] credentials in .dlt/secrets.toml)."
)


# -- building failures as the libraries raise them -------------------------------------------------
def raised_from(outer: E, inner: BaseException) -> E:
    """`outer` as `raise outer from inner`, inside `except inner`, leaves it."""
    try:
        try:
            raise inner
        except BaseException as caught:
            raise outer from caught
    except BaseException as raised:
        assert raised is outer
    return outer


def raised_while_handling(outer: E, inner: BaseException) -> E:
    """`outer` as `raise outer` inside `except inner` leaves it (how dlt raises
    DestinationConnectionError: the driver's error is only the context)."""
    try:
        try:
            raise inner
        except BaseException:
            raise outer  # noqa: B904 - dlt raises it this way
    except BaseException as raised:
        assert raised is outer
    return outer


class _Pipeline:
    """What PipelineStepFailed reads of the pipeline."""

    pipeline_name = "stripe_pipeline"
    has_pending_data = True


def step_failed(error: BaseException, step: TPipelineStep = "load") -> PipelineStepFailed:
    """`error` wrapped as dlt's run/extract/normalize/load wrap what stopped them."""
    pipeline = cast(SupportsPipeline, _Pipeline())
    wrapper = PipelineStepFailed(pipeline, step, LOAD_ID, error)
    return raised_from(wrapper, error)


def lookalike(cls: type[BaseException], message: str) -> Exception:
    """An exception whose class has the name, qualified name and module of `cls` but is not
    `cls`: a by-name check cannot tell it apart."""
    namespace = {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
    fake = type(cls.__name__, (Exception,), namespace)
    instance: Exception = fake(message)
    assert type(instance).__name__ == cls.__name__
    assert type(instance).__module__ == cls.__module__
    assert not isinstance(instance, cls)
    return instance


def explained(error: BaseException, destination: str = "duckdb") -> str:
    return explain(error, destination=destination, duckdb_file=None)


def unrecognised(error: BaseException) -> str:
    """What `explain` says of a failure it does not recognise: the innermost cause, as is."""
    innermost = root_causes(error)[-1]
    return f"{type(innermost).__name__}: {str(innermost).strip().splitlines()[0]}"


# -- a load job dlt gave up on ---------------------------------------------------------------------
def terminal_message(reason: str) -> str:
    return (
        f"Loading into duckdb failed, and would fail the same way again: {reason}. The load "
        "package stays pending (stripe_raw may hold part of it; the current-state tables are "
        "unchanged). To move on, abort it: `dlt pipeline --pipelines-dir /p stripe_pipeline "
        "abort-packages` puts the cursors back to before it. Then run again; if the same data "
        "fails again, report this message."
    )


def failed_job() -> DatabaseTerminalException:
    """What a load job raised: the database refused the data, dlt's wrapping around it."""
    refused = duckdb.ConversionException("Conversion Error: Could not convert string 'x' to INT32")
    return raised_from(DatabaseTerminalException(refused), refused)


def test_load_client_job_failed_is_a_terminal_load_failure() -> None:
    assert LoadClientJobFailed in TERMINAL_LOAD_FAILURES
    job = failed_job()
    # The package was aborted: dlt raises PipelineStepFailed from the LoadClientJobFailed.
    failed = LoadClientJobFailed(LOAD_ID, "coupons.a1b2c3.0", str(job), job)
    error = step_failed(failed)
    assert is_terminal_load_failure(error)
    assert not was_interrupted(error)
    reason = (
        f"Job with `job_id=coupons.a1b2c3.0` and `load_id={LOAD_ID}` failed terminally "
        f"with message: {job}. The package is aborted and cannot be retried"
    )  # one full stop between dlt's sentence and ours
    assert explain(error, destination="duckdb", duckdb_file=None, pipelines_dir="/p") == (
        terminal_message(reason)
    )

    fake = step_failed(raised_from(lookalike(LoadClientJobFailed, "failed terminally"), job))
    assert not is_terminal_load_failure(fake)
    assert explained(fake) == unrecognised(fake)


def test_load_client_job_terminal_retry_is_a_terminal_load_failure() -> None:
    assert LoadClientJobTerminalRetry in TERMINAL_LOAD_FAILURES
    job = failed_job()
    # dlt raises it `from` the job's exception, then the pipeline wraps it.
    retry = LoadClientJobTerminalRetry(LOAD_ID, "coupons.a1b2c3.0", str(job), job)
    error = step_failed(raised_from(retry, job))
    assert is_terminal_load_failure(error)
    assert explain(error, destination="duckdb", duckdb_file=None, pipelines_dir="/p") == (
        terminal_message("Conversion Error: Could not convert string 'x' to INT32")
    )

    fake = step_failed(raised_from(lookalike(LoadClientJobTerminalRetry, "queued"), job))
    assert not is_terminal_load_failure(fake)
    assert explained(fake) == unrecognised(fake)


# -- Ctrl-C ----------------------------------------------------------------------------------------
def test_duckdb_interrupt_exception_is_an_interruption() -> None:
    assert duckdb.InterruptException in INTERRUPTIONS
    # Ctrl-C cut a DuckDB query short: dlt's SQL client wraps what the driver raised.
    interrupted = duckdb.InterruptException("INTERRUPT Error: Interrupted!")
    error = step_failed(raised_from(DatabaseTransientException(interrupted), interrupted))
    assert was_interrupted(error)
    assert not is_terminal_load_failure(error)

    fake = lookalike(duckdb.InterruptException, "INTERRUPT Error: Interrupted!")
    wrapped = step_failed(raised_from(DatabaseTransientException(fake), fake))
    assert not was_interrupted(wrapped)


def test_dlt_signal_received_is_an_interruption() -> None:
    # dlt turns SIGINT into SignalReceivedException, a KeyboardInterrupt.
    assert KeyboardInterrupt in INTERRUPTIONS
    assert was_interrupted(step_failed(SignalReceivedException(2), step="extract"))
    assert was_interrupted(step_failed(KeyboardInterrupt(), step="extract"))

    fake = lookalike(SignalReceivedException, "Received `signal_code=2`")
    assert not was_interrupted(step_failed(fake, step="extract"))


# -- credentials that do not parse ----------------------------------------------------------------
UNPARSABLE = (
    "The postgres credentials are not a connection string dlt understands. " + POSTGRES_HINT
)


def test_invalid_native_value_is_unparsable_credentials() -> None:
    assert InvalidNativeValue in UNPARSABLE_CREDENTIALS
    # dlt itself, resolving credentials that are not a URL.
    with pytest.raises(InvalidNativeValue) as raised:
        resolve_configuration(PostgresCredentials(), explicit_value="host=db user=me")
    error = raised.value
    assert is_unparsable_credentials(error)
    assert explained(error, "postgres") == UNPARSABLE

    fake = lookalike(InvalidNativeValue, "cannot parse the configuration value provided")
    assert not is_unparsable_credentials(fake)
    assert explained(fake, "postgres") == unrecognised(fake)


def test_invalid_connection_string_is_unparsable_credentials() -> None:
    assert InvalidConnectionString in UNPARSABLE_CREDENTIALS
    # What InvalidNativeValue wraps, on its own too.
    with pytest.raises(InvalidConnectionString) as raised:
        PostgresCredentials().parse_native_representation("host=db user=me")
    error = raised.value
    assert is_unparsable_credentials(error)
    assert not is_connection_failure(error)
    assert explained(error, "postgres") == UNPARSABLE
    built = InvalidConnectionString(PostgresCredentials, "host=db", "postgresql")
    assert explained(built, "postgres") == UNPARSABLE

    # "connection" in its name made the by-name check call it a refused connection too.
    fake = lookalike(InvalidConnectionString, "a standard database connection string")
    assert not is_unparsable_credentials(fake)
    assert not is_connection_failure(fake)
    assert explained(fake, "postgres") == unrecognised(fake)


# -- a destination that cannot be opened or reached ----------------------------------------------
def pipeline_to(destination: Destination[Any, Any], pipelines_dir: Path) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name="errors_by_type",
        destination=destination,
        dataset_name="stripe_raw",
        pipelines_dir=str(pipelines_dir),
    )


def open_failure(pipeline: dlt.Pipeline) -> BaseException:
    """What opening the pipeline's destination raises."""
    with pytest.raises(Exception) as raised, pipeline.sql_client():
        pass
    return raised.value


def test_destination_connection_error_is_a_connection_failure(isolated: Path) -> None:
    assert DestinationConnectionError in CONNECTION_FAILURES
    path = isolated / "missing" / "x.duckdb"
    # dlt itself, opening a DuckDB file in a folder that does not exist.
    error = open_failure(pipeline_to(dlt.destinations.duckdb(str(path)), isolated / "p"))
    assert isinstance(error, DestinationConnectionError)
    assert is_connection_failure(error)
    assert explained(error) == (
        f'Cannot connect to the duckdb destination: IO Error: Cannot open file "{path}": No '
        f"such file or directory: the folder for the DuckDB file does not exist. {DUCKDB_HINT}"
    )

    fake = raised_while_handling(
        lookalike(DestinationConnectionError, "Connection failed"), RuntimeError("boom")
    )
    assert not is_connection_failure(fake)
    assert explained(fake) == "RuntimeError: boom"


def test_duckdb_io_exception_is_a_connection_failure(tmp_path: Path) -> None:
    assert duckdb.IOException in CONNECTION_FAILURES
    with pytest.raises(duckdb.IOException) as raised:
        duckdb.connect(str(tmp_path))  # a folder, not a file
    error = raised.value
    assert is_connection_failure(error)
    assert explained(error) == (
        f'Cannot connect to the duckdb destination: IO Error: Could not read from file "{tmp_path}"'
        f": Is a directory: that path is a folder; name a file in it. {DUCKDB_HINT}"
    )

    fake = lookalike(duckdb.IOException, f'IO Error: Could not read from file "{tmp_path}"')
    assert not is_connection_failure(fake)
    assert explained(fake) == unrecognised(fake)


def test_duckdb_connection_exception_is_a_connection_failure() -> None:
    assert duckdb.ConnectionException in CONNECTION_FAILURES
    connection = duckdb.connect()
    connection.close()
    with pytest.raises(duckdb.ConnectionException) as raised:
        connection.execute("SELECT 1")
    error = raised.value
    assert is_connection_failure(error)
    assert explained(error) == (
        "Cannot connect to the duckdb destination: Connection Error: Connection already closed. "
        + DUCKDB_HINT
    )

    fake = lookalike(duckdb.ConnectionException, "Connection Error: Connection already closed!")
    assert not is_connection_failure(fake)
    assert explained(fake) == unrecognised(fake)


def test_duckdb_operational_error_is_a_connection_failure() -> None:
    assert duckdb.OperationalError in CONNECTION_REFUSALS
    error = duckdb.OperationalError("could not connect")
    assert is_connection_failure(error)
    says = f"Cannot connect to the duckdb destination: could not connect. {DUCKDB_HINT}"
    assert explained(error) == says

    fake = lookalike(duckdb.OperationalError, "could not connect")
    assert not is_connection_failure(fake)
    assert explained(fake) == unrecognised(fake)


def no_server_message(socket_dir: Path) -> str:
    return (
        f'Cannot connect to the postgres destination: connection to server on socket "{socket_dir}'
        '/.s.PGSQL.5432" failed: No such file or directory: no server socket at that host or '
        f"socket folder. {POSTGRES_HINT}"
    )


def test_psycopg2_operational_error_is_a_connection_failure(tmp_path: Path) -> None:
    assert psycopg2.OperationalError in CONNECTION_REFUSALS
    gone = tmp_path / "gone"
    # libpq cannot connect: psycopg2 raises the bare OperationalError.
    with pytest.raises(psycopg2.OperationalError) as raised:
        psycopg2.connect(host=str(gone), dbname="postgres", user="postgres")
    error = raised.value
    assert type(error) is psycopg2.OperationalError
    assert is_connection_failure(error)
    assert explained(error, "postgres") == no_server_message(gone)

    fake = lookalike(psycopg2.OperationalError, f'connection to server on socket "{gone}" failed')
    assert not is_connection_failure(fake)
    assert explained(fake, "postgres") == unrecognised(fake)


def test_postgres_refusal_through_dlt_is_a_connection_failure(isolated: Path) -> None:
    # dlt 1.31 raises psycopg2's error as is (its postgres client marks close_connection, not
    # open_connection, with raise_open_connection_error); wrapped in DestinationConnectionError
    # or not, the message is the same.
    gone = isolated / "gone"
    url = f"postgresql://postgres:secretpw@localhost/postgres?host={gone}"
    error = open_failure(pipeline_to(dlt.destinations.postgres(url), isolated / "p"))
    assert isinstance(error, psycopg2.OperationalError | DestinationConnectionError)
    assert explained(error, "postgres") == no_server_message(gone)


@pytest.mark.parametrize(
    "cls",
    [
        psycopg2.errors.ConnectionException,
        psycopg2.errors.ConnectionDoesNotExist,
        psycopg2.errors.ConnectionFailure,
        psycopg2.errors.SqlclientUnableToEstablishSqlconnection,
        psycopg2.errors.SqlserverRejectedEstablishmentOfSqlconnection,
        psycopg2.errors.TooManyConnections,
    ],
    ids=lambda cls: str(cls.__name__),
)
def test_postgres_connection_sqlstates_are_connection_failures(cls: type[Exception]) -> None:
    assert cls in CONNECTION_FAILURES
    # Raised in a session when the server sends the SQLSTATE; dlt's SQL client wraps it.
    refused = cls("server closed the connection unexpectedly")
    error = raised_from(DatabaseTransientException(refused), refused)
    assert is_connection_failure(refused)
    assert explained(error, "postgres") == (
        "Cannot connect to the postgres destination: server closed the connection unexpectedly. "
        + POSTGRES_HINT
    )

    fake = lookalike(cls, "server closed the connection unexpectedly")
    assert not is_connection_failure(fake)
    wrapped = raised_from(DatabaseTransientException(fake), fake)
    assert explained(wrapped, "postgres") == unrecognised(wrapped)


@pytest.mark.parametrize(
    "error",
    [
        psycopg2.errors.DeadlockDetected("deadlock detected"),
        psycopg2.errors.QueryCanceled("canceling statement due to statement timeout"),
        psycopg2.errors.DiskFull("could not extend file: No space left on device"),
        duckdb.TransactionException("TransactionContext Error: Conflict on update"),
        duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_working_connections_failures_are_not_connection_failures(error: Exception) -> None:
    # Subclasses of the OperationalErrors above: recognised by exact class, not isinstance.
    assert isinstance(error, CONNECTION_REFUSALS)
    assert not is_connection_failure(error)
    assert explained(error) == unrecognised(error)
