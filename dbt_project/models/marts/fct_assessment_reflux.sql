with followups as (
    select * from {{ ref('int_followups_windowed') }}
    where la_grade is not null or aet_percent is not null or gerdq_score is not null or ppi_use is not null
),

exclusions as (
    select record_sk,
        max(case when excluded_from = 'esophagitis' then 1 else 0 end) = 1 as egd_excluded,
        max(case when excluded_from = 'gerd_objective' then 1 else 0 end) = 1 as ph_excluded
    from {{ ref('int_record_exclusions') }}
    where record_type = 'followup'
    group by record_sk
)

select
    followups.assessment_sk,
    followups.site_id,
    followups.procedure_sk,
    followups.patient_sk,
    followups.is_index_poem,
    followups.assessment_date,
    followups.days_since_procedure,
    followups.window_code,
    followups.days_since_procedure between {{ threshold('reflux_window_min_day') }}
        and {{ threshold('reflux_window_max_day') }} as in_reflux_range,
    followups.la_grade,
    followups.la_grade is not null and not coalesce(exclusions.egd_excluded, false) as egd_counts,
    case when followups.la_grade is not null then followups.la_grade in ('A', 'B', 'C', 'D') end as esophagitis_any,
    case when followups.la_grade is not null then followups.la_grade in ('B', 'C', 'D') end as esophagitis_conclusive,
    case when followups.la_grade is not null then followups.la_grade in ('C', 'D') end as esophagitis_severe,
    followups.aet_percent,
    followups.ph_on_ppi,
    case
        when followups.aet_percent is not null and not coalesce(exclusions.ph_excluded, false)
            then followups.aet_percent > {{ threshold('aet_abnormal_percent') }}
    end as gerd_objective_aet,
    followups.gerdq_score,
    case
        when followups.gerdq_score is not null then followups.gerdq_score >= {{ threshold('gerdq_symptomatic_min') }}
    end as gerd_symptomatic,
    followups.ppi_use
from followups
left join exclusions on exclusions.record_sk = followups.assessment_sk
