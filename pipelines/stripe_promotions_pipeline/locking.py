"""One run at a time per pipeline, so two runs never interleave their state, packages or loads.

- A lock file beside dlt's working folder, `<pipelines dir>/<pipeline name>.lock` (beside, not
  in it: dlt empties the working folder when it creates or restores a pipeline). The operating
  system releases it when the process ends, however it ends: a killed run leaves no stale lock.
  The holder writes its pid, host and start time into the file for the message others print.
- On PostgreSQL also a session advisory lock, so runs on other machines (with working folders
  of their own) against the same dataset wait too.

A second run waits up to `lock_wait` seconds (`STRIPE_PIPELINE_LOCK_WAIT`, default 5), then
refuses with a message naming the run that holds the lock; it has changed nothing by then.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt
import fasteners

from .errors import RunError

LOCK_WAIT_ENV = "STRIPE_PIPELINE_LOCK_WAIT"
DEFAULT_LOCK_WAIT = 5.0


class RunLockedError(RunError):
    """Another run of the same pipeline holds the lock."""


def default_lock_wait() -> float:
    """Seconds a run waits for another to finish: `STRIPE_PIPELINE_LOCK_WAIT`, or 5."""
    configured = os.environ.get(LOCK_WAIT_ENV, "").strip()
    if not configured:
        return DEFAULT_LOCK_WAIT
    try:
        seconds = float(configured)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise RunError(
            f"{LOCK_WAIT_ENV}={configured!r} is not a number of seconds: use e.g. 0 (refuse at "
            "once), 5 (the default) or 600."
        )
    return seconds


def holder_note() -> dict[str, Any]:
    """Who holds a lock: this process."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def describe(holder: dict[str, Any] | None) -> str:
    """`pid 123 on host, started ...`, or what is known of it."""
    if not holder or "pid" not in holder:
        return "another run (it has not written its pid yet)"
    where = f" on {holder['host']}" if holder.get("host") else ""
    since = f", started {holder['started']}" if holder.get("started") else ""
    return f"the run with pid {holder['pid']}{where}{since}"


def refusal(pipeline_name: str, where: str, holder: str, waited: float) -> RunLockedError:
    """The message for a run that found the pipeline busy."""
    return RunLockedError(
        f"Another run of {pipeline_name} is in progress ({holder}; {where}). Runs of one "
        f"pipeline go one at a time so neither corrupts the other; this one waited "
        f"{waited:g} s and changed nothing. Let that run finish, then run again (or set "
        f"{LOCK_WAIT_ENV} to wait longer)."
    )


def lock_path(pipelines_dir: str, pipeline_name: str) -> Path:
    """The lock file beside the pipeline's working folder."""
    return Path(pipelines_dir) / f"{pipeline_name}.lock"


@contextmanager
def local_run_lock(
    pipelines_dir: str,
    pipeline_name: str,
    wait: float,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[Path]:
    """Hold the pipeline's lock file for the duration of the block."""
    path = lock_path(pipelines_dir, pipeline_name)
    lock = fasteners.InterProcessLock(str(path))
    if not lock.acquire(blocking=False):
        if on_wait is not None and wait > 0:
            on_wait(describe(_read_holder(path)))
        if not lock.acquire(blocking=True, timeout=wait, delay=0.05, max_delay=0.5):
            raise refusal(pipeline_name, f"lock file {path}", describe(_read_holder(path)), wait)
    try:
        _write_holder(lock, holder_note())
        yield path
    finally:
        _write_holder(lock, None)  # nobody's pid lingers in the file once it is free
        lock.release()


def _write_holder(lock: fasteners.InterProcessLock, holder: dict[str, Any] | None) -> None:
    handle = lock.lockfile
    if handle is None:
        return
    handle.truncate(0)
    if holder is not None:
        handle.write(json.dumps(holder))
    handle.flush()


def _read_holder(path: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


# -- PostgreSQL: an advisory lock held by a connection of its own for the whole run ---------------
def advisory_key(pipeline_name: str, dataset_name: str) -> int:
    """A stable signed 64-bit key for `pg_try_advisory_lock`, from pipeline and dataset."""
    digest = hashlib.sha256(
        f"stripe_promotions_pipeline:{pipeline_name}:{dataset_name}".encode()
    ).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def destination_run_lock(
    pipeline: dlt.Pipeline, wait: float, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """On PostgreSQL, hold a session advisory lock on the dataset; elsewhere nothing to do.

    (DuckDB allows one writing process per file anyway; MotherDuck, Snowflake and BigQuery
    runs from several machines are not serialised here: let the orchestrator run one at a time.)
    """
    if pipeline.destination is None or pipeline.destination.destination_name != "postgres":
        yield
        return
    key = advisory_key(pipeline.pipeline_name, pipeline.dataset_name)
    note = holder_note()
    name = f"stripe_promotions_pipeline pid {note['pid']} on {note['host']}"[:63]
    with pipeline.sql_client() as client:
        client.execute_sql("SELECT set_config('application_name', %s, false)", name)
        deadline = time.monotonic() + wait
        told = False
        while not _query_one(client, "SELECT pg_try_advisory_lock(%s)", key):
            holder = _advisory_holder(client, key)
            if time.monotonic() >= deadline:
                where = f"PostgreSQL advisory lock {key} on {pipeline.dataset_name}"
                raise refusal(pipeline.pipeline_name, where, holder, wait)
            if on_wait is not None and not told:
                on_wait(holder)
                told = True
            time.sleep(0.25)
        try:
            yield
        finally:
            client.execute_sql("SELECT pg_advisory_unlock(%s)", key)


def _query_one(client: Any, sql: str, *args: Any) -> Any:
    """The first value of the first row."""
    rows = client.execute_sql(sql, *args)
    return rows[0][0] if rows else None


def _advisory_holder(client: Any, key: int) -> str:
    """The application name and address of the session holding the lock."""
    rows = client.execute_sql(
        "SELECT a.application_name, a.client_addr, a.backend_start FROM pg_locks AS l "
        "JOIN pg_stat_activity AS a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
        "AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 1",
        (key >> 32) & 0xFFFFFFFF,
        key & 0xFFFFFFFF,
    )
    if not rows:
        return "another run (it has just finished or is starting)"
    application, address, started = rows[0]
    source = f" from {address}" if address else ""
    return f"{application or 'a session'}{source}, connected since {started}"
