-- Per-record quality flags that keep a record out of a denominator, with the
-- reason (clinical-spec §1.4, §2.5, §4.4). A record can have several reasons.
with procedures as (
    select * from {{ ref('int_procedures_enriched') }}
),

followups as (
    select
        followups.*,
        {{ days_between('procedures.procedure_date', 'followups.assessment_date') }} as days_since_procedure
    from {{ ref('stg_registry__followups') }} as followups
    inner join procedures on procedures.procedure_sk = followups.procedure_sk
),

adverse_events as (
    select
        adverse_events.*,
        {{ days_between('procedures.procedure_date', 'adverse_events.onset_date') }} as days_since_procedure
    from {{ ref('stg_registry__adverse_events') }} as adverse_events
    inner join procedures on procedures.procedure_sk = adverse_events.procedure_sk
),

flags as (
    select 'followup' as record_type, assessment_sk as record_sk, procedure_sk, site_id,
        'assessment_not_after_procedure' as reason_code, 'all_outcomes' as excluded_from, 'error' as severity
    from followups where days_since_procedure <= 0

    union all
    select 'followup', assessment_sk, procedure_sk, site_id,
        'followup_within_min_days', 'clinical_success', 'warning'
    from followups where days_since_procedure > 0 and days_since_procedure < {{ threshold('followup_min_days') }}

    union all
    select 'followup', assessment_sk, procedure_sk, site_id,
        'eckardt_total_mismatch', 'clinical_success', 'error'
    from followups
    where eckardt_total_reported is not null and eckardt_items_sum is not null
      and eckardt_total_reported <> eckardt_items_sum

    union all
    select 'followup', assessment_sk, procedure_sk, site_id,
        'egd_within_exclusion_days', 'esophagitis', 'warning'
    from followups
    where la_grade is not null and days_since_procedure <= {{ threshold('esophagitis_exclusion_days') }}

    union all
    select 'followup', assessment_sk, procedure_sk, site_id,
        'ph_study_on_ppi_or_unknown', 'gerd_objective', 'warning'
    from followups where aet_percent is not null and coalesce(ph_on_ppi, true)

    union all
    select 'procedure', procedure_sk, procedure_sk, site_id,
        'baseline_eckardt_missing', 'baseline', 'warning'
    from procedures where procedure_type_in_scope and not baseline_eckardt_complete

    union all
    select 'procedure', procedure_sk, procedure_sk, site_id,
        'baseline_eckardt_outside_window', 'baseline', 'warning'
    from procedures
    where procedure_type_in_scope and baseline_eckardt_complete and not baseline_eckardt_valid

    union all
    select 'adverse_event', adverse_event_sk, procedure_sk, site_id,
        'ae_onset_before_procedure', 'all_outcomes', 'error'
    from adverse_events where days_since_procedure < 0

    union all
    select 'adverse_event', adverse_event_sk, procedure_sk, site_id,
        'ae_after_30_days', 'ae_30d', 'info'
    from adverse_events where days_since_procedure > {{ threshold('ae_30d_max_days') }}
)

select
    record_type || ':' || record_sk || ':' || reason_code as exclusion_sk,
    record_type,
    record_sk,
    procedure_sk,
    site_id,
    reason_code,
    excluded_from,
    severity
from flags
