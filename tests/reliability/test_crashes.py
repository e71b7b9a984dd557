"""Crashes: SIGKILL in every phase, Ctrl-C, and two runs at once (invariant 3).

The command runs as a subprocess against the in-process emulator (its server thread answers
the subprocess over HTTP on 127.0.0.1), slowed by latency so phases last long enough to hit.
RELIABILITY_KILLS=N runs N kills instead of the CI-sized default (see docs/RELIABILITY.md).
"""

from __future__ import annotations

import os
import random
import signal
import threading
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import pytest
import stripe

from stripe_emulator.server import EmulatorServer
from stripe_promotions_pipeline import RunError
from stripe_promotions_pipeline.config import make_pipeline
from stripe_promotions_pipeline.locking import RunLockedError, advisory_key
from tests.conftest import create_database
from tests.reliability.harness import (
    Changes,
    CommandRun,
    assert_converged,
    assert_cursors_cover_loaded_data,
    command_env,
    cursors,
    destination_state_version,
    has_pending_data,
    local_state,
    seed,
    warehouse_for,
)
from tests.support import TEST_KEY, Warehouse

KILLS = int(os.environ.get("RELIABILITY_KILLS", "6"))
# Where each kill aims, in turn: "resuming" is the run after a kill that left a package behind;
# "anywhere" is a random moment from the start, whatever the phase.
TARGETS = ("extracting", "normalizing", "resuming", "loading", "transforming", "anywhere")
# How long after the phase line to wait at most before the kill (phases differ in length).
DELAY = {
    "extracting": 1.5,
    "normalizing": 0.05,
    "resuming": 0.4,
    "loading": 0.3,
    "transforming": 1.0,
}
LATENCY_MS = 150
DAY = 24 * 3600


@pytest.fixture
def account_with_data(stripe_emulator: EmulatorServer) -> EmulatorServer:
    stripe_emulator.account.seed(coupons=20, products=12, promotion_codes=40)
    return stripe_emulator


def kill_run(
    emulator: EmulatorServer, cwd: Path, target: str, rng: random.Random
) -> tuple[str, bool]:
    """One command run killed (SIGKILL) in `target`: (the phase it died in, whether killed)."""
    emulator.account.faults.configure(latency_ms=LATENCY_MS)
    env = command_env(cwd, SOURCES__STRIPE__PAGE_SIZE="10")
    run = CommandRun(["--api-base", emulator.url], cwd, env)
    try:
        if target == "anywhere":  # a random moment once the run has begun, any phase
            if run.wait_for(("resuming", "extracting")) is not None:
                threading.Event().wait(rng.uniform(0, 4.0))
        else:
            wanted = (target, "extracting") if target == "resuming" else (target,)
            reached = run.wait_for(wanted)
            if reached is not None:
                threading.Event().wait(rng.uniform(0, DELAY[reached]))
        run.signal(signal.SIGKILL)
        finished = run.finish()
    finally:
        emulator.account.faults.configure(latency_ms=0)
        if run.process.poll() is None:
            run.process.kill()
    assert TEST_KEY not in finished.output
    if not finished.killed:
        assert finished.returncode == 0, finished.stderr
    return finished.phase or "starting", finished.killed


def test_killed_runs_in_every_phase_lose_nothing(
    account_with_data: EmulatorServer, isolated: Path
) -> None:
    emulator = account_with_data
    account = emulator.account
    rng = random.Random(seed())
    changes = Changes(emulator, rng)
    warehouse = warehouse_for(isolated, emulator.url, lock_wait=30)
    killed_in: Counter[str] = Counter()
    completed = 0
    attempts = 0
    target_index = 0
    print(f"crash test: {KILLS} kills, RELIABILITY_SEED={seed()}")
    while sum(killed_in.values()) < KILLS:
        attempts += 1
        assert attempts <= KILLS * 3, f"kills did not land: {killed_in}"
        target = TARGETS[target_index % len(TARGETS)]
        target_index += 1
        if target == "resuming" and not has_pending_data(warehouse):
            target = "loading"
        before = cursors(local_state(isolated))
        phase, killed = kill_run(emulator, isolated, target, rng)
        pending = has_pending_data(warehouse)
        if killed:
            killed_in[phase] += 1
            after = local_state(isolated)
            if after and cursors(after) != before:
                # A cursor moves only together with the data it covers: in a package waiting
                # in the working folder, or loaded along with the state that holds it.
                loaded = destination_state_version(warehouse) == after["_state_version"]
                assert pending or loaded, f"a cursor moved past data that is gone ({phase})"
        resume_next = TARGETS[target_index % len(TARGETS)] == "resuming"
        if killed and pending and resume_next and sum(killed_in.values()) < KILLS:
            continue  # the next run is killed while it loads what this one left
        # Otherwise the run after a kill completes (Stripe changed meanwhile, too) and converges.
        changes.make(rng.randint(0, 3))
        result = warehouse.run()
        completed += 1
        assert_converged(warehouse, account)
        assert_cursors_cover_loaded_data(warehouse, account, local_state(isolated))
        assert not has_pending_data(warehouse)
        assert result.stats.requests > 0
        # Then Stripe changes (sometimes much later) before the next run is started and killed.
        changes.make(rng.randint(2, 6))
        account.advance_clock(rng.choice([1, 30, 600, DAY]))
    result = warehouse.run()
    counts = assert_converged(warehouse, account)
    assert_cursors_cover_loaded_data(warehouse, account, local_state(isolated))
    print(
        f"crash figures: kills={sum(killed_in.values())} by phase={dict(killed_in)} "
        f"runs completed={completed + 1} changes={len(changes.made)} rows={counts} lost=0"
    )
    assert len(killed_in) >= min(KILLS, 3), f"kills landed in too few phases: {killed_in}"


def test_ctrl_c_says_where_it_stopped_and_the_next_run_continues(
    account_with_data: EmulatorServer, isolated: Path
) -> None:
    emulator = account_with_data
    account = emulator.account
    warehouse = warehouse_for(isolated, emulator.url)
    env = command_env(isolated, SOURCES__STRIPE__PAGE_SIZE="10")

    # While extracting: nothing kept, no cursor moved.
    account.faults.configure(latency_ms=300)
    run = CommandRun(["--api-base", emulator.url], isolated, env)
    assert run.wait_for(("extracting",)) == "extracting"
    threading.Event().wait(0.3)
    assert run.signal(signal.SIGINT)
    stopped = run.finish()
    assert stopped.returncode == 130, stopped.stderr
    assert "interrupted: Stopped while extracting" in stopped.stderr
    assert "Nothing from this run was kept and no cursor moved" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert cursors(local_state(isolated)) == cursors({})
    assert not has_pending_data(warehouse)

    # While loading (after a first load and some changes): the package is kept and resumed.
    account.faults.configure(latency_ms=0)
    warehouse.run()
    Changes(emulator, random.Random(seed())).make(6)
    run = CommandRun(["--api-base", emulator.url], isolated, env)
    assert run.wait_for(("loading",)) == "loading"
    assert run.signal(signal.SIGINT)
    stopped = run.finish()
    assert stopped.returncode == 130, stopped.stderr
    assert "interrupted: Stopped while loading" in stopped.stderr, stopped.stderr
    assert "the next run loads it first" in stopped.stderr
    assert "Traceback" not in stopped.stderr

    result = warehouse.run()
    assert result.resumed
    assert_converged(warehouse, account)
    assert_cursors_cover_loaded_data(warehouse, account, local_state(isolated))


def test_two_runs_at_once_one_waits_or_refuses_naming_the_other(
    account_with_data: EmulatorServer, isolated: Path
) -> None:
    emulator = account_with_data
    account = emulator.account
    warehouse = warehouse_for(isolated, emulator.url)
    account.faults.configure(latency_ms=400)
    first = CommandRun(["--api-base", emulator.url], isolated, command_env(isolated))
    try:
        assert first.wait_for(("extracting",)) == "extracting"
        # A second run that may not wait refuses at once, naming the first, changing nothing.
        with pytest.raises(RunLockedError) as refused:
            warehouse.run(lock_wait=0)
        message = str(refused.value)
        assert f"pid {first.process.pid}" in message and "in progress" in message
        assert "changed nothing" in message and "STRIPE_PIPELINE_LOCK_WAIT" in message
        assert isinstance(refused.value, RunError)
        # One that may wait runs once the first is done; both complete.
        account.faults.configure(latency_ms=50)
        result = warehouse.run(lock_wait=120)
    finally:
        account.faults.configure(latency_ms=0)
        done = first.finish()
    assert done.returncode == 0, done.stderr
    assert result.stats.requests > 0
    assert_converged(warehouse, account)
    assert_cursors_cover_loaded_data(warehouse, account, local_state(isolated))


def test_postgres_runs_from_other_machines_wait_for_the_advisory_lock(
    account_with_data: EmulatorServer,
    isolated: Path,
    postgres_socket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emulator = account_with_data
    credentials = create_database(postgres_socket)
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", credentials)
    warehouse = warehouse_for(isolated, emulator.url, destination="postgres")
    # "Another machine": a session holding the dataset's lock, with a working folder elsewhere
    # (advisory locks belong to a database: it connects to the same one).
    database = urlsplit(credentials).path.lstrip("/")
    other = psycopg2.connect(dbname=database, user="postgres", host=postgres_socket)
    other.autocommit = True
    key = advisory_key("stripe_pipeline", "stripe_raw")
    with other.cursor() as cursor:
        cursor.execute("SELECT set_config('application_name', 'nightly run on host-b', false)")
        cursor.execute("SELECT pg_advisory_lock(%s)", (key,))
    try:
        with pytest.raises(RunLockedError) as refused:
            warehouse.run(lock_wait=0.5)
        assert "nightly run on host-b" in str(refused.value)
        assert "advisory lock" in str(refused.value)
        assert sum(emulator.account.requests.values()) == 0  # refused before reading Stripe
        # The other run ends while this one waits: this one then runs.
        releaser = threading.Timer(1.0, other.close)
        releaser.start()
        result = warehouse.run(lock_wait=60)
        releaser.join()
    finally:
        other.close()
    assert result.stats.requests > 0
    assert_converged(warehouse, emulator.account)
    held = warehouse.rows("SELECT COUNT(*) AS n FROM pg_locks WHERE locktype = 'advisory'")
    assert held[0]["n"] == 0  # this run let go of its lock


def test_a_run_killed_while_normalize_deletes_its_extracted_package_is_not_stuck(
    warehouse: Warehouse, client: stripe.StripeClient
) -> None:
    """dlt commits a normalized package, then deletes the extracted one: a kill in between
    leaves part of the extracted package (found by the crash test under load), which every
    later normalize failed on. The next run drops it and loads what changed."""
    warehouse.run()
    pipeline = make_pipeline(warehouse.settings)
    (load_id,) = pipeline.list_completed_load_packages()[-1:]
    remnant = Path(pipeline.pipelines_dir, pipeline.pipeline_name, "normalize", "extracted")
    (remnant / load_id / "new_jobs").mkdir(parents=True)
    (remnant / load_id / "schema.json").write_text("{}")
    client.v1.coupons.create(params={"id": "AFTER", "percent_off": 5, "duration": "once"})
    warehouse.run()
    assert not (remnant / load_id).exists()
    assert "AFTER" in warehouse.current("coupons")
