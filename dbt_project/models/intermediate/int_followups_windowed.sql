-- Window assignment (clinical-spec §6.1): an assessment belongs to the window whose
-- day bounds contain its day after the procedure; per procedure and window the
-- assessment closest to the nominal day is used for the Eckardt outcome, ties to
-- the later one. Only assessments with a usable Eckardt total compete.
with followups as (
    select * from {{ ref('stg_registry__followups') }}
),

procedures as (
    select procedure_sk, procedure_date, is_index_poem from {{ ref('int_procedures_enriched') }}
),

windows as (
    select * from {{ ref('cfg_followup_windows') }}
),

clinical_exclusions as (
    select record_sk, count(*) as n_reasons
    from {{ ref('int_record_exclusions') }}
    where record_type = 'followup' and excluded_from in ('clinical_success', 'all_outcomes')
    group by record_sk
),

dated as (
    select
        followups.*,
        procedures.procedure_date,
        procedures.is_index_poem,
        {{ days_between('procedures.procedure_date', 'followups.assessment_date') }} as days_since_procedure,
        case
            when followups.eckardt_items_sum is not null then followups.eckardt_items_sum
            else followups.eckardt_total_reported
        end as eckardt_total,
        clinical_exclusions.record_sk is null as passes_clinical_checks
    from followups
    inner join procedures on procedures.procedure_sk = followups.procedure_sk
    left join clinical_exclusions on clinical_exclusions.record_sk = followups.assessment_sk
),

assigned as (
    select
        dated.*,
        dated.eckardt_total is not null and dated.passes_clinical_checks as eckardt_usable,
        windows.window_code,
        windows.window_order,
        windows.nominal_day,
        windows.min_day as window_min_day,
        windows.max_day as window_max_day
    from dated
    left join windows on dated.days_since_procedure between windows.min_day and windows.max_day
),

ranked as (
    select
        assigned.*,
        row_number() over (
            partition by procedure_sk, window_code, eckardt_usable
            order by
                abs(days_since_procedure - nominal_day),
                days_since_procedure desc,
                assessment_sk desc
        ) as window_rank
    from assigned
)

select
    assessment_sk,
    site_id,
    assessment_id,
    procedure_sk,
    patient_sk,
    is_index_poem,
    procedure_date,
    assessment_date,
    days_since_procedure,
    assessment_mode,
    eckardt_dysphagia,
    eckardt_regurgitation,
    eckardt_chest_pain,
    eckardt_weight_loss,
    eckardt_total_reported,
    eckardt_items_sum,
    eckardt_total,
    passes_clinical_checks,
    eckardt_usable,
    window_code,
    window_order,
    nominal_day,
    window_min_day,
    window_max_day,
    abs(days_since_procedure - nominal_day) as days_from_nominal,
    coalesce(window_code is not null and eckardt_usable and window_rank = 1, false) as is_window_eckardt_pick,
    ppi_use,
    gerdq_score,
    la_grade,
    aet_percent,
    ph_on_ppi,
    irp_mmhg,
    les_pressure_mmhg,
    tbe_5min_cm
from ranked
