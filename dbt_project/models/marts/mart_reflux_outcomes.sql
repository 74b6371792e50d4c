-- Reflux outcomes 3-12 months after each index POEM (days reflux_window_min_day to
-- reflux_window_max_day), kept as separate measures (clinical-spec §4.3: never one
-- merged "GERD" rate).
with index_poems as (
    select procedure_sk, site_id, patient_sk, procedure_date, procedure_quarter_start, diagnosis, diagnosis_group
    from {{ ref('fct_procedure') }}
    where is_index_poem
),

in_range as (
    select * from {{ ref('fct_assessment_reflux') }}
    where in_reflux_range
),

per_procedure as (
    select
        procedure_sk,
        coalesce(bool_or(egd_counts), false) as has_egd,
        coalesce(bool_or(egd_counts and esophagitis_any), false) as esophagitis_any,
        coalesce(bool_or(egd_counts and esophagitis_conclusive), false) as esophagitis_conclusive,
        coalesce(bool_or(egd_counts and esophagitis_severe), false) as esophagitis_severe,
        coalesce(bool_or(aet_percent is not null), false) as has_ph_study,
        coalesce(bool_or(gerd_objective_aet is not null), false) as has_ph_study_off_ppi,
        coalesce(bool_or(gerd_objective_aet), false) as gerd_objective_aet,
        coalesce(bool_or(gerdq_score is not null), false) as has_gerdq,
        coalesce(bool_or(gerd_symptomatic), false) as gerd_symptomatic
    from in_range
    group by procedure_sk
),

window_12m as (
    select procedure_sk, eligible, window_closed, assessed, ppi_use
    from {{ ref('mart_outcome_windows') }}
    where window_code = 'w_12m'
)

select
    index_poems.*,
    coalesce(per_procedure.has_egd, false) as has_egd,
    coalesce(per_procedure.esophagitis_any, false) as esophagitis_any,
    coalesce(per_procedure.esophagitis_conclusive, false) as esophagitis_conclusive,
    coalesce(per_procedure.esophagitis_severe, false) as esophagitis_severe,
    coalesce(per_procedure.has_ph_study, false) as has_ph_study,
    coalesce(per_procedure.has_ph_study_off_ppi, false) as has_ph_study_off_ppi,
    coalesce(per_procedure.gerd_objective_aet, false) as gerd_objective_aet,
    coalesce(per_procedure.has_gerdq, false) as has_gerdq,
    coalesce(per_procedure.gerd_symptomatic, false) as gerd_symptomatic,
    coalesce((per_procedure.has_egd or per_procedure.has_ph_study_off_ppi) and per_procedure.has_gerdq, false)
        as has_lyon_inputs,
    coalesce(
        (per_procedure.esophagitis_conclusive or per_procedure.gerd_objective_aet) and per_procedure.gerd_symptomatic,
        false
    ) as gerd_lyon_actionable,
    coalesce(window_12m.eligible, false) as eligible_12m,
    window_12m.window_closed and window_12m.assessed and window_12m.ppi_use is not null as ppi_recorded_12m,
    window_12m.ppi_use as ppi_use_12m
from index_poems
left join per_procedure on per_procedure.procedure_sk = index_poems.procedure_sk
left join window_12m on window_12m.procedure_sk = index_poems.procedure_sk
