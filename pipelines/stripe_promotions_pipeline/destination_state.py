"""The destination is the truth (invariant 6): local working state never outranks it.

dlt keeps the pipeline's state (cursors, "raw tables created") in its local working folder and
a copy in the destination, loaded with the data. A run checks both before it starts: when the
destination holds none of this pipeline's state (a new DuckDB file, a file moved away, dropped
schemas, another destination), the local state is dropped and the run loads everything; when
the destination's state is older than the local one (restored from a backup), the run
continues from the destination's. The dlt working folder then always describes the data the
destination really holds.
"""

from __future__ import annotations

import hashlib
import json

import dlt
from dlt.common.destination.client import WithStateSync
from dlt.common.destination.exceptions import DestinationUndefinedEntity
from dlt.common.schema import Schema
from dlt.destinations.exceptions import DatabaseUndefinedRelation

STATE_TABLE = "_dlt_pipeline_state"
VERSION_TABLE = "_dlt_version"
SCHEMA_NAME = "stripe"  # the dlt source's name, so its schema's
# The local state's record of the destination it last agreed with (never synced to one).
DESTINATION_KEY = "stripe_destination"


def destination_state_version(pipeline: dlt.Pipeline) -> int | None:
    """The newest state version this pipeline loaded into its dataset; None if there is none."""
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(STATE_TABLE)
            rows = client.execute_sql(
                f"SELECT MAX(version) FROM {table} WHERE pipeline_name = %s",
                pipeline.pipeline_name,
            )
    except (DatabaseUndefinedRelation, DestinationUndefinedEntity):
        return None
    version = rows[0][0] if rows else None
    return None if version is None else int(version)


def local_state_version(pipeline: dlt.Pipeline) -> int | None:
    """The local state's version, if the local state has ever run the source; else None."""
    state = pipeline.state
    if not state.get("sources"):
        return None
    return int(state.get("_state_version", 0))


def reconcile(pipeline: dlt.Pipeline) -> str | None:
    """Make the local state agree with the destination's; a note for the user if it did not.

    A run that was interrupted (pending load packages) is left alone when the destination has
    this pipeline's state: its packages hold newer state on purpose, and are loaded first.
    """
    identity = destination_identity(pipeline)
    try:
        last = pipeline.get_local_state_val(DESTINATION_KEY)
    except KeyError:
        last = None
    note = _reconciled(pipeline, switched=last not in (None, identity))
    pipeline.set_local_state_val(DESTINATION_KEY, identity)
    return note


def _reconciled(pipeline: dlt.Pipeline, *, switched: bool) -> str | None:
    local = local_state_version(pipeline)
    remote = destination_state_version(pipeline)
    where = destination_words(pipeline)
    if remote is None:
        if local is None:
            return None
        pipeline.drop()
        return (
            f"{where} has none of this pipeline's data (new, emptied, moved, or another "
            "destination): loading everything again (a full load)."
        )
    if switched:
        follow_destination(pipeline)
        return f"Switched to {where}: continuing from its own state."
    if local is None or remote > local:
        pipeline.sync_destination()  # another machine ran, or the local folder was deleted
        return None
    if remote < local and not pipeline.has_pending_data:
        follow_destination(pipeline)
        return (
            f"{where} holds older data than this machine last loaded (restored from a "
            "backup?): continuing from the destination's own state, so nothing in between "
            "is missed."
        )
    return None


def follow_destination(pipeline: dlt.Pipeline) -> None:
    """Drop the local state and take the destination's (dlt restores only a newer one)."""
    pipeline.drop()
    pipeline.sync_destination()


def destination_identity(pipeline: dlt.Pipeline) -> str:
    """Which destination and dataset, as a hash (credentials print with passwords hidden, and
    are hashed anyway: local state is no place for where a warehouse lives)."""
    destination = pipeline.destination
    kind = destination.destination_type if destination is not None else ""
    credentials = str(pipeline.destination_client().config.credentials)
    text = f"{kind}|{credentials}|{pipeline.dataset_name}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def destination_words(pipeline: dlt.Pipeline) -> str:
    """The destination, as the notes name it."""
    destination = pipeline.destination
    name = destination.destination_name if destination is not None else "the destination"
    return f"The destination ({name}, dataset {pipeline.dataset_name})"


def adopt_loaded_schema(pipeline: dlt.Pipeline) -> None:
    """Give the pipeline the dlt schema of the raw tables as loaded: its own (or, when it never
    loaded, as a fan-out's base pipeline, the newest version stored in the dataset), with
    every column another version stored there has besides. Tables its own schema dropped (a
    migration's) stay dropped."""
    name = pipeline.default_schema_name or SCHEMA_NAME
    stored = stored_schemas(pipeline, name)
    if not stored:
        return  # nothing loaded yet: the transforms say so
    if pipeline.default_schema_name:
        merged, others = pipeline.default_schema, stored
    else:
        merged, *others = stored
    for other in others:
        for table_name, table in other.tables.items():
            known = merged.tables.get(table_name)
            if known is None:
                continue  # a table the newest version dropped stays dropped
            missing = {c: col for c, col in table["columns"].items() if c not in known["columns"]}
            if missing:
                merged.update_table(
                    {"name": table_name, "columns": missing}, normalize_identifiers=False
                )
    pipeline.schemas.save_schema(merged)
    if pipeline.default_schema_name is None:
        pipeline.default_schema_name = merged.name  # type: ignore[assignment]  # dlt: None


def stored_schemas(pipeline: dlt.Pipeline, name: str) -> list[Schema]:
    """Every distinct version of schema `name` stored in the pipeline's dataset, newest first."""
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(VERSION_TABLE)
            rows = client.execute_sql(
                f"SELECT version_hash FROM {table} WHERE schema_name = %s "
                "GROUP BY version_hash ORDER BY MAX(inserted_at) DESC",
                name,
            )
    except (DatabaseUndefinedRelation, DestinationUndefinedEntity):
        return []
    schemas: list[Schema] = []
    with pipeline.destination_client() as job_client:
        if not isinstance(job_client, WithStateSync):
            return []
        for (version_hash,) in rows or []:
            info = job_client.get_stored_schema_by_hash(str(version_hash))
            if info is not None:
                schemas.append(Schema.from_dict(json.loads(info.schema)))
    return schemas
