"""Airflow wiring for the pipeline: task definitions, callbacks, and the deployment's init command.

The DAG files in ``dags/`` import from here; this package imports only ``airflow.sdk``
and light parts of ``poem_registry`` at module level, so parsing a DAG file stays fast.
The stage functions (ingest, dbt, GX, reports) are imported inside the tasks.
"""
