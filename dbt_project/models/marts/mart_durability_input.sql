-- Input to the Kaplan-Meier durability estimate (clinical-spec §6.3), computed in
-- Python: time to the first failure (an assessment with Eckardt > 3 or a
-- re-intervention for persistent or recurrent symptoms, whichever is earlier),
-- else censored at the last assessment (all of which were successes).
with index_poems as (
    select procedure_sk, site_id, patient_sk, procedure_date, procedure_quarter_start, procedure_year,
        diagnosis, diagnosis_group
    from {{ ref('fct_procedure') }}
    where is_index_poem
),

usable_assessments as (
    select procedure_sk, days_since_procedure, eckardt_total
    from {{ ref('int_followups_windowed') }}
    where eckardt_usable and assessment_date <= {{ as_of_date() }}
),

assessment_summary as (
    select
        procedure_sk,
        min(case when eckardt_total > {{ threshold('eckardt_success_max') }} then days_since_procedure end)
            as first_eckardt_failure_day,
        max(days_since_procedure) as last_assessment_day,
        count(*) as n_assessments
    from usable_assessments
    group by procedure_sk
),

reintervention_summary as (
    select procedure_sk, min(days_since_procedure) as first_reintervention_day
    from {{ ref('fct_reintervention') }}
    where counts_as_clinical_failure
    group by procedure_sk
),

combined as (
    select
        index_poems.*,
        assessment_summary.first_eckardt_failure_day,
        reintervention_summary.first_reintervention_day,
        coalesce(assessment_summary.last_assessment_day, 0) as last_assessment_day,
        coalesce(assessment_summary.n_assessments, 0) as n_assessments
    from index_poems
    left join assessment_summary on assessment_summary.procedure_sk = index_poems.procedure_sk
    left join reintervention_summary on reintervention_summary.procedure_sk = index_poems.procedure_sk
)

select
    procedure_sk,
    site_id,
    patient_sk,
    procedure_date,
    procedure_quarter_start,
    procedure_year,
    diagnosis,
    diagnosis_group,
    n_assessments,
    first_eckardt_failure_day,
    first_reintervention_day,
    case
        when first_reintervention_day is not null
            and (first_eckardt_failure_day is null or first_reintervention_day < first_eckardt_failure_day)
            then 'reintervention'
        when first_eckardt_failure_day is not null then 'eckardt_gt3'
    end as event_type,
    first_eckardt_failure_day is not null or first_reintervention_day is not null as event,
    case
        when first_reintervention_day is not null
            and (first_eckardt_failure_day is null or first_reintervention_day < first_eckardt_failure_day)
            then first_reintervention_day
        when first_eckardt_failure_day is not null then first_eckardt_failure_day
        else last_assessment_day
    end as time_days,
    {{ as_of_date() }} as as_of
from combined
