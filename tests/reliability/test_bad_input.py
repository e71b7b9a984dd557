"""Bad destination credentials: a clear message, exit code 1, nothing loaded, nothing leaked.

(The other bad inputs, from keys to batch files, are in tests/pipeline/test_command.py,
tests/pipeline/test_sync.py and tests/notebooks/test_notebooks.py.)
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import psycopg2
import pytest

from stripe_emulator.server import EmulatorServer
from tests.reliability.harness import assert_converged, has_pending_data, main, warehouse_for

PASSWORD_USER, RIGHT_PASSWORD, WRONG_PASSWORD = "reliability_pw", "rightPassw0rd", "wrongPassw0rd"


@pytest.fixture(scope="module")
def password_user(postgres_socket: str) -> str:
    """A role that must give its password (the test server trusts everyone else)."""
    connection = psycopg2.connect(dbname="postgres", user="postgres", host=postgres_socket)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SHOW hba_file")
        row = cursor.fetchone()
        assert row is not None
        hba = Path(row[0])
        rule = f"local all {PASSWORD_USER} scram-sha-256\n"
        if rule not in hba.read_text():
            hba.write_text(rule + hba.read_text())
            cursor.execute(f"CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{RIGHT_PASSWORD}'")
        cursor.execute("SELECT pg_reload_conf()")
    connection.close()
    wait_until_passwords_are_asked(postgres_socket)
    return postgres_socket


def wait_until_passwords_are_asked(socket_dir: str) -> None:
    """The server reloads its rules in the background: until then the role gets in unasked."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            psycopg2.connect(
                dbname="postgres", user=PASSWORD_USER, password=WRONG_PASSWORD, host=socket_dir
            ).close()
        except psycopg2.OperationalError:
            return
        time.sleep(0.05)
    raise AssertionError("the server never started asking for the password")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


POSTGRES_CASES: dict[str, tuple[Callable[[str], str], str]] = {
    "wrong password": (
        lambda s: f"postgresql://{PASSWORD_USER}:{WRONG_PASSWORD}@localhost/postgres?host={s}",
        "the password is wrong for that user",
    ),
    "unknown user": (
        lambda s: f"postgresql://nobody:{WRONG_PASSWORD}@localhost/postgres?host={s}",
        "that user does not exist",
    ),
    "unknown database": (
        lambda s: f"postgresql://postgres:{WRONG_PASSWORD}@localhost/no_such_db?host={s}",
        "that database does not exist",
    ),
    "nothing listening": (
        lambda s: f"postgresql://postgres:{WRONG_PASSWORD}@127.0.0.1:{closed_port()}/postgres",
        "nothing listens at that host and port",
    ),
    "no server socket": (
        lambda s: f"postgresql://postgres:{WRONG_PASSWORD}@localhost/postgres?host={s}/gone",
        "no server socket",
    ),
    "no password": (
        lambda s: f"postgresql://postgres@localhost/postgres?host={s}",
        "Missing configuration for destination 'postgres': credentials.password",
    ),
    "not a URL": (lambda s: "host=db user=me", "not a connection string"),
}


@pytest.mark.parametrize("case", POSTGRES_CASES)
def test_bad_postgres_credentials(
    case: str,
    password_user: str,
    stripe_emulator: EmulatorServer,
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    url, says = POSTGRES_CASES[case]
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", url(password_user))
    code = main(["--destination", "postgres", "--api-base", stripe_emulator.url, "--quiet"])
    message = capfd.readouterr().err
    assert code == 1
    assert says in message, message
    assert "DESTINATION__POSTGRES__CREDENTIALS=postgresql://user:password@host" in message
    assert WRONG_PASSWORD not in message and "Traceback" not in message
    # Refused before anything was read from Stripe or extracted.
    assert sum(stripe_emulator.account.requests.values()) == 0
    warehouse = warehouse_for(isolated, stripe_emulator.url, destination="postgres")
    assert not has_pending_data(warehouse)


def test_right_password_loads(
    password_user: str, stripe_emulator: EmulatorServer, isolated: Path
) -> None:
    # The same role with its password: the rule above is what refused, not the setup.
    connection = psycopg2.connect(dbname="postgres", user="postgres", host=password_user)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("DROP DATABASE IF EXISTS reliability_pw_db")
        cursor.execute(f"CREATE DATABASE reliability_pw_db OWNER {PASSWORD_USER}")
    connection.close()
    stripe_emulator.account.seed(coupons=3, products=2, promotion_codes=3)
    credentials = (
        f"postgresql://{PASSWORD_USER}:{RIGHT_PASSWORD}@localhost/reliability_pw_db"
        f"?host={password_user}"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DESTINATION__POSTGRES__CREDENTIALS", credentials)
        code = main(["--destination", "postgres", "--api-base", stripe_emulator.url, "--quiet"])
    assert code == 0


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("missing/folder/x.duckdb", "the folder for the DuckDB file does not exist"),
        ("not_duckdb.duckdb", "that file is not a DuckDB database"),
        ("a_folder", "that path is a folder"),
    ],
)
def test_bad_duckdb_destination(
    where: str,
    says: str,
    stripe_emulator: EmulatorServer,
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    (isolated / "not_duckdb.duckdb").write_text("a spreadsheet, really")
    (isolated / "a_folder").mkdir()
    stripe_emulator.account.seed(coupons=3, products=2, promotion_codes=3)
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(isolated / where))
    assert main(["--api-base", stripe_emulator.url, "--quiet"]) == 1
    message = capfd.readouterr().err
    assert says in message and "DESTINATION__DUCKDB__CREDENTIALS=" in message, message
    # Refused before anything was read from Stripe or extracted.
    assert sum(stripe_emulator.account.requests.values()) == 0
    assert not has_pending_data(warehouse_for(isolated, stripe_emulator.url))
    # Pointed at a good file, the next run loads everything, and converges.
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(isolated / "good.duckdb"))
    assert main(["--api-base", stripe_emulator.url, "--quiet"]) == 0
    good = warehouse_for(isolated, stripe_emulator.url)
    good.settings.duckdb_file = str(isolated / "good.duckdb")
    assert_converged(good, stripe_emulator.account)


def test_a_lock_wait_that_is_not_seconds(
    stripe_emulator: EmulatorServer,
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("STRIPE_PIPELINE_LOCK_WAIT", "a while")
    assert main(["--api-base", stripe_emulator.url, "--quiet"]) == 1
    message = capfd.readouterr().err
    assert "STRIPE_PIPELINE_LOCK_WAIT='a while' is not a number of seconds" in message
    assert sum(stripe_emulator.account.requests.values()) == 0
