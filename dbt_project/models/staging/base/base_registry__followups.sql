{{ config(unique_key=['_site_id', 'assessment_id'], incremental_strategy='delete+insert', on_schema_change='fail') }}

{{ latest_version('followups', ['assessment_id']) }}
