"""Dagster definitions: `dagster dev -m orchestration.dagster.definitions` (repository root)."""
