{{ config(unique_key=['_site_id', 'event_id'], incremental_strategy='delete+insert', on_schema_change='fail') }}

{{ latest_version('reinterventions', ['event_id']) }}
