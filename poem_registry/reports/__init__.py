"""Report pages, published editions, measures export and notifications (see README "Reports").

Entry points: :func:`~poem_registry.reports.publish.publish_edition`,
:func:`~poem_registry.reports.measures_export.export_measures`,
:func:`~poem_registry.reports.notify.notify` and
:func:`~poem_registry.reports.notify.notify_failure`. Modules import lazily so the
Airflow DAG files stay light.
"""
