"""Orchestrator definitions: Dagster (`orchestration.dagster`) and Airflow (`airflow/`)."""
