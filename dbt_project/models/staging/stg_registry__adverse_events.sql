-- Adverse events hang off their procedure: the inner join drops those of
-- withdrawn patients.
with adverse_events as (
    select * from {{ ref('base_registry__adverse_events') }}
),

procedures as (
    select procedure_sk, site_id, procedure_id, patient_sk from {{ ref('stg_registry__procedures') }}
)

select
    adverse_events._site_id || ':' || adverse_events.event_id as adverse_event_sk,
    adverse_events._site_id as site_id,
    adverse_events.event_id,
    procedures.procedure_sk,
    adverse_events.procedure_id,
    procedures.patient_sk,
    adverse_events.ae_type,
    adverse_events.onset_date,
    coalesce(adverse_events.unplanned_nights, 0) as unplanned_nights,
    coalesce(adverse_events.icu_nights, 0) as icu_nights,
    coalesce(adverse_events.transfusion, false) as transfusion,
    coalesce(adverse_events.repeat_endoscopy, false) as repeat_endoscopy,
    coalesce(adverse_events.interventional_radiology, false) as interventional_radiology,
    coalesce(adverse_events.surgery, false) as surgery,
    coalesce(adverse_events.permanent_disability, false) as permanent_disability,
    coalesce(adverse_events.death, false) or adverse_events.ae_type = 'death' as death,
    coalesce(adverse_events.procedure_aborted, false) as procedure_aborted,
    coalesce(adverse_events.unplanned_airway_support, false) as unplanned_airway_support,
    coalesce(adverse_events.post_procedure_consultation, false) as post_procedure_consultation,
    adverse_events.severity_reported,
    adverse_events.record_updated_at,
    adverse_events._extract_id,
    adverse_events._extracted_at,
    adverse_events._batch_id
from adverse_events
inner join procedures
    on procedures.site_id = adverse_events._site_id and procedures.procedure_id = adverse_events.procedure_id
