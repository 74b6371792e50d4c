with baseline as (
    select
        procedure_sk || ':baseline' as assessment_sk,
        'baseline' as assessment_kind,
        site_id,
        procedure_sk,
        patient_sk,
        baseline_eckardt_date as assessment_date,
        -baseline_eckardt_days_before as days_since_procedure,
        baseline_eckardt_dysphagia as eckardt_dysphagia,
        baseline_eckardt_regurgitation as eckardt_regurgitation,
        baseline_eckardt_chest_pain as eckardt_chest_pain,
        baseline_eckardt_weight_loss as eckardt_weight_loss,
        baseline_eckardt_total as eckardt_total,
        baseline_eckardt_valid as usable,
        cast(null as varchar) as window_code,
        false as is_window_eckardt_pick
    from {{ ref('int_procedures_enriched') }}
    where procedure_type_in_scope and baseline_eckardt_date is not null
),

followups as (
    select
        assessment_sk,
        'followup' as assessment_kind,
        site_id,
        procedure_sk,
        patient_sk,
        assessment_date,
        days_since_procedure,
        eckardt_dysphagia,
        eckardt_regurgitation,
        eckardt_chest_pain,
        eckardt_weight_loss,
        eckardt_total,
        eckardt_usable as usable,
        window_code,
        is_window_eckardt_pick
    from {{ ref('int_followups_windowed') }}
    where eckardt_total is not null
),

exclusion_reasons as (
    select record_sk, string_agg(reason_code, ', ' order by reason_code) as exclusion_reasons
    from {{ ref('int_record_exclusions') }}
    where excluded_from in ('clinical_success', 'baseline', 'all_outcomes')
    group by record_sk
),

assessments as (
    select * from baseline
    union all
    select * from followups
)

select
    assessments.*,
    assessments.eckardt_total <= {{ threshold('eckardt_success_max') }} as eckardt_le3,
    case
        when assessments.eckardt_total is null then null
        when assessments.eckardt_total <= {{ threshold('eckardt_stage_0_max') }} then '0'
        when assessments.eckardt_total <= {{ threshold('eckardt_success_max') }} then 'I'
        when assessments.eckardt_total <= {{ threshold('eckardt_stage_2_max') }} then 'II'
        else 'III'
    end as eckardt_stage,
    exclusion_reasons.exclusion_reasons
from assessments
left join exclusion_reasons
    on exclusion_reasons.record_sk = case
        when assessments.assessment_kind = 'baseline' then assessments.procedure_sk
        else assessments.assessment_sk
    end
