"""Parse an Airflow DAGs folder and run one DAG with `dag.test()`: a subprocess of test_airflow.py.

    python airflow_dag_runner.py DAG_ID [RUN_CONF_JSON] [--keep-retries]

Airflow reads its configuration (AIRFLOW_HOME, AIRFLOW__CORE__DAGS_FOLDER, ...) from the
environment when first imported, and dlt's Airflow helper changes process-wide environment
variables while the DAG file is parsed; a process of its own keeps both away from pytest's.
Prints `PARSED {json}` (import errors, the DAG's settings), runs `dag.test(run_conf=...)` once,
without retries so that a failure ends the run at once (unless --keep-retries), and prints
`RESULT {json}` (run and task states) and `MAPPED {json}` (each mapped task's instances'
states, in map index order).

One run per process, as Airflow itself runs tasks: a second `dag.test()` of the same parsed DAG
fails, because dlt's `PipelineTasksGroup` wipes the pipeline's working folder after each task
(`wipe_local_data`) and the next run's `pipeline.activate()` needs that folder.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def report(tag: str, payload: dict[str, Any]) -> None:
    print(f"{tag} {json.dumps(payload)}", flush=True)


def main(dag_id: str, run_conf: dict[str, Any], keep_retries: bool) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag()  # the configured DAGs folder, parsed as the DAG processor would
    parsed: dict[str, Any] = {"import_errors": dict(bag.import_errors), "dag_ids": sorted(bag.dags)}
    if bag.import_errors or dag_id not in bag.dags:
        report("PARSED", parsed)
        return
    dag = bag.dags[dag_id]
    parsed["schedule"] = str(dag.schedule)
    parsed["max_active_runs"] = dag.max_active_runs
    parsed["params"] = dag.params.dump()
    parsed["tasks"] = {
        task.task_id: {
            "retries": task.retries,
            "retry_delay": task.retry_delay.total_seconds(),
            "upstream": sorted(task.upstream_task_ids),
        }
        for task in dag.tasks
    }
    parsed["max_active_tis_per_dagrun"] = {
        task.task_id: task.max_active_tis_per_dagrun
        for task in dag.tasks
        if task.max_active_tis_per_dagrun is not None
    }
    report("PARSED", parsed)
    for task in dag.tasks if not keep_retries else []:  # a failure ends the run at once
        task.retries = 0
    run = dag.test(run_conf=run_conf)
    instances = sorted(run.get_task_instances(), key=lambda ti: (ti.task_id, ti.map_index))
    states = {ti.task_id: str(ti.state) for ti in instances}
    report("RESULT", {"state": str(run.state), "tasks": states})
    mapped: dict[str, list[str]] = {}
    for ti in instances:
        if ti.map_index >= 0:  # a mapped task's instances, in map index order
            mapped.setdefault(ti.task_id, []).append(str(ti.state))
    report("MAPPED", mapped)


if __name__ == "__main__":
    args = [arg for arg in sys.argv[1:] if arg != "--keep-retries"]
    main(args[0], json.loads(args[1]) if len(args) > 1 else {}, "--keep-retries" in sys.argv)
