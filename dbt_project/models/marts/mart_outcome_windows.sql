-- Clinical success per index POEM and follow-up window (clinical-spec §1.3, §6.1,
-- §6.2). A window counts only once it has closed by as_of, so a later, closer
-- assessment can no longer change a published number.
with index_poems as (
    select procedure_sk, site_id, patient_sk, procedure_date, procedure_quarter_start, procedure_year,
        diagnosis, diagnosis_group
    from {{ ref('fct_procedure') }}
    where is_index_poem
),

windows as (
    select window_code, window_order, nominal_day, min_day, max_day from {{ ref('cfg_followup_windows') }}
),

picks as (
    select procedure_sk, window_code, assessment_sk, assessment_date, days_since_procedure, eckardt_total, ppi_use
    from {{ ref('int_followups_windowed') }}
    where is_window_eckardt_pick
),

failure_reinterventions as (
    select procedure_sk, min(reintervention_date) as first_failure_reintervention_date
    from {{ ref('fct_reintervention') }}
    where counts_as_clinical_failure
    group by procedure_sk
),

deaths as (
    select patient_sk, min(onset_date) as death_date
    from {{ ref('int_adverse_events_graded') }}
    where death
    group by patient_sk
),

grid as (
    select
        index_poems.*,
        windows.window_code,
        windows.window_order,
        windows.nominal_day,
        windows.min_day as window_min_day,
        windows.max_day as window_max_day,
        {{ add_days('index_poems.procedure_date', 'windows.min_day') }} as window_start_date,
        {{ add_days('index_poems.procedure_date', 'windows.max_day') }} as window_end_date
    from index_poems
    cross join windows
),

assembled as (
    select
        grid.*,
        grid.window_end_date <= {{ as_of_date() }} as window_closed,
        picks.assessment_sk,
        picks.assessment_date,
        picks.days_since_procedure as assessment_day,
        picks.eckardt_total,
        picks.ppi_use,
        picks.assessment_sk is not null as assessed,
        deaths.death_date,
        failure_reinterventions.first_failure_reintervention_date,
        coalesce(failure_reinterventions.first_failure_reintervention_date < grid.window_start_date, false)
            as reintervention_before_window,
        coalesce(failure_reinterventions.first_failure_reintervention_date < picks.assessment_date, false)
            as reintervention_before_assessment
    from grid
    left join picks on picks.procedure_sk = grid.procedure_sk and picks.window_code = grid.window_code
    left join failure_reinterventions on failure_reinterventions.procedure_sk = grid.procedure_sk
    left join deaths on deaths.patient_sk = grid.patient_sk
),

classified as (
    select
        assembled.*,
        -- ITT eligibility: the window has closed, and the patient was alive at its end (or was assessed in it).
        window_closed and (death_date is null or death_date > window_end_date or assessed) as eligible,
        case when assessed then eckardt_total <= {{ threshold('eckardt_success_max') }} end as success_eckardt_le3,
        case
            when reintervention_before_window then false
            when assessed then eckardt_total <= {{ threshold('eckardt_success_max') }}
                and not reintervention_before_assessment
        end as success_eckardt_le3_no_reintervention
    from assembled
)

select
    procedure_sk || ':' || window_code as outcome_window_sk,
    classified.*,
    -- cs_eckardt_le3: PP = assessed; ITT = eligible, missing counts as failure.
    window_closed and assessed as le3_pp_denominator,
    window_closed and assessed and success_eckardt_le3 as le3_pp_success,
    eligible as le3_itt_denominator,
    eligible and coalesce(success_eckardt_le3, false) as le3_itt_success,
    -- cs_eckardt_le3_no_reintervention: a re-intervention before the window is a known failure,
    -- so it enters the PP denominator even without an assessment.
    window_closed and (assessed or reintervention_before_window) as composite_pp_denominator,
    window_closed and (assessed or reintervention_before_window)
        and coalesce(success_eckardt_le3_no_reintervention, false) as composite_pp_success,
    eligible as composite_itt_denominator,
    eligible and coalesce(success_eckardt_le3_no_reintervention, false) as composite_itt_success
from classified
