{{ config(unique_key=['_site_id', 'procedure_id'], incremental_strategy='delete+insert', on_schema_change='fail') }}

{{ latest_version('procedures', ['procedure_id']) }}
