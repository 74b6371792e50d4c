-- Re-interventions hang off their index procedure: the inner join drops those of
-- withdrawn patients. Whether one counts as clinical failure comes from the
-- code set (reintervention_indication.in_scope).
with reinterventions as (
    select * from {{ ref('base_registry__reinterventions') }}
),

procedures as (
    select procedure_sk, site_id, procedure_id, patient_sk from {{ ref('stg_registry__procedures') }}
),

code_sets as (
    select * from {{ ref('code_sets') }}
)

select
    reinterventions._site_id || ':' || reinterventions.event_id as reintervention_sk,
    reinterventions._site_id as site_id,
    reinterventions.event_id,
    procedures.procedure_sk,
    reinterventions.procedure_id,
    procedures.patient_sk,
    reinterventions.reintervention_date,
    reinterventions.reintervention_type,
    reinterventions.indication,
    coalesce(indication.in_scope, false) as counts_as_clinical_failure,
    reinterventions.record_updated_at,
    reinterventions._extract_id,
    reinterventions._extracted_at,
    reinterventions._batch_id
from reinterventions
inner join procedures
    on procedures.site_id = reinterventions._site_id and procedures.procedure_id = reinterventions.procedure_id
left join code_sets as indication
    on indication.code_set = 'reintervention_indication' and indication.code = reinterventions.indication
