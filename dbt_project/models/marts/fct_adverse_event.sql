select * from {{ ref('int_adverse_events_graded') }}
