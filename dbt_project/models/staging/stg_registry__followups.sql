-- Follow-ups hang off their procedure: the inner join drops those of withdrawn
-- patients (and orphans, which ingestion already rejects).
with followups as (
    select * from {{ ref('base_registry__followups') }}
),

procedures as (
    select procedure_sk, site_id, procedure_id, patient_sk from {{ ref('stg_registry__procedures') }}
)

select
    followups._site_id || ':' || followups.assessment_id as assessment_sk,
    followups._site_id as site_id,
    followups.assessment_id,
    procedures.procedure_sk,
    followups.procedure_id,
    procedures.patient_sk,
    followups.assessment_date,
    followups.mode as assessment_mode,
    followups.eckardt_dysphagia,
    followups.eckardt_regurgitation,
    followups.eckardt_chest_pain,
    followups.eckardt_weight_loss,
    followups.eckardt_total as eckardt_total_reported,
    followups.eckardt_dysphagia + followups.eckardt_regurgitation
        + followups.eckardt_chest_pain + followups.eckardt_weight_loss as eckardt_items_sum,
    followups.ppi_use,
    followups.gerdq_score,
    followups.la_grade,
    followups.aet_percent,
    followups.ph_on_ppi,
    followups.irp_mmhg,
    followups.les_pressure_mmhg,
    followups.tbe_5min_cm,
    followups.record_updated_at,
    followups._extract_id,
    followups._extracted_at,
    followups._batch_id
from followups
inner join procedures
    on procedures.site_id = followups._site_id and procedures.procedure_id = followups.procedure_id
