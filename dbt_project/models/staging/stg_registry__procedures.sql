with procedures as (
    select * from {{ ref('base_registry__procedures') }}
),

withdrawals as (
    select * from {{ ref('stg_registry__withdrawals') }}
),

code_sets as (
    select * from {{ ref('code_sets') }}
)

select
    procedures._site_id || ':' || procedures.procedure_id as procedure_sk,
    procedures._site_id as site_id,
    procedures.procedure_id,
    procedures._site_id || ':' || procedures.patient_key as patient_sk,
    procedures.patient_key,
    procedures.operator_key,
    procedures.procedure_date,
    procedures.procedure_type,
    procedure_type.description as procedure_type_description,
    coalesce(procedure_type.in_scope, false) as procedure_type_in_scope,
    procedures.sex,
    procedures.birth_year,
    coalesce(
        procedures.age_at_procedure,
        cast(extract(year from procedures.procedure_date) as integer) - procedures.birth_year
    ) as age_at_procedure,
    procedures.diagnosis,
    diagnosis.description as diagnosis_description,
    procedures.cc_version,
    procedures.esophageal_morphology,
    procedures.hiatal_hernia,
    procedures.chagas,
    procedures.prior_pneumatic_dilation,
    procedures.prior_botulinum,
    procedures.prior_heller,
    procedures.prior_poem,
    procedures.baseline_eckardt_date,
    procedures.baseline_eckardt_dysphagia,
    procedures.baseline_eckardt_regurgitation,
    procedures.baseline_eckardt_chest_pain,
    procedures.baseline_eckardt_weight_loss,
    procedures.baseline_eckardt_dysphagia + procedures.baseline_eckardt_regurgitation
        + procedures.baseline_eckardt_chest_pain + procedures.baseline_eckardt_weight_loss
        as baseline_eckardt_total,
    procedures.baseline_irp_mmhg,
    procedures.baseline_les_pressure_mmhg,
    procedures.baseline_tbe_5min_cm,
    procedures.approach,
    procedures.myotomy_depth,
    procedures.tunnel_length_cm,
    procedures.myotomy_esophageal_length_cm,
    procedures.myotomy_gastric_length_cm,
    procedures.procedure_minutes,
    procedures.technical_success,
    procedures.aborted_reason,
    coalesce(procedures.fundoplication, false) as fundoplication,
    coalesce(procedures.mucosotomy_intraop, false) as mucosotomy_intraop,
    coalesce(procedures.capnoperitoneum, false) as capnoperitoneum,
    coalesce(procedures.needle_decompression, false) as needle_decompression,
    coalesce(procedures.capnothorax, false) as capnothorax,
    coalesce(procedures.subcutaneous_emphysema, false) as subcutaneous_emphysema,
    procedures.planned_los_nights,
    procedures.discharge_date,
    {{ days_between('procedures.procedure_date', 'procedures.discharge_date') }} as los_nights,
    procedures.record_updated_at,
    procedures._extract_id,
    procedures._extracted_at,
    procedures._batch_id
from procedures
left join code_sets as procedure_type
    on procedure_type.code_set = 'procedure_type' and procedure_type.code = procedures.procedure_type
left join code_sets as diagnosis
    on diagnosis.code_set = 'diagnosis' and diagnosis.code = procedures.diagnosis
where not exists (
    select 1 from withdrawals
    where withdrawals.site_id = procedures._site_id and withdrawals.patient_key = procedures.patient_key
)
