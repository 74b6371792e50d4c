-- Worst LA grade of esophagitis at the counted EGDs reflux_window_min_day to
-- reflux_window_max_day after each index POEM (the window of mart_reflux_outcomes),
-- counted by site (and 'ALL') and period of the procedure date (quarter, year, all
-- time, as in mart_measures). Only index POEMs with a counted EGD (has_egd) are in it,
-- so the grades of one site and period add up to the P11/P11A/P11C denominator, and
-- grades B-D to the P11 numerator.
with grade_rank as (
    -- LA grades in order of severity: none < A < B < C < D (code set la_grade)
    select code as la_grade,
        case code when 'none' then 0 when 'A' then 1 when 'B' then 2 when 'C' then 3 when 'D' then 4 end
            as la_grade_rank
    from {{ ref('code_sets') }}
    where code_set = 'la_grade'
),

with_egd as (
    select procedure_sk, site_id, patient_sk, procedure_date, procedure_quarter_start
    from {{ ref('mart_reflux_outcomes') }}
    where has_egd
),

registry_start as (
    select min(procedure_date) as first_procedure_date
    from {{ ref('fct_procedure') }}
    where is_index_poem
),

worst as (
    select egd.procedure_sk, max(grade_rank.la_grade_rank) as worst_rank
    from {{ ref('fct_assessment_reflux') }} as egd
    inner join grade_rank on grade_rank.la_grade = egd.la_grade
    where egd.in_reflux_range and egd.egd_counts
    group by egd.procedure_sk
),

per_procedure as (
    select
        with_egd.site_id,
        with_egd.patient_sk,
        with_egd.procedure_date,
        with_egd.procedure_quarter_start,
        grade_rank.la_grade,
        grade_rank.la_grade_rank
    from with_egd
    inner join worst on worst.procedure_sk = with_egd.procedure_sk
    inner join grade_rank on grade_rank.la_grade_rank = worst.worst_rank
),

by_site as (
    select * from per_procedure
    union all
    select 'ALL', patient_sk, procedure_date, procedure_quarter_start, la_grade, la_grade_rank
    from per_procedure
),

by_period as (
    select by_site.*, 'quarter' as period_type, procedure_quarter_start as period_start,
        cast({{ dbt.dateadd('day', -1, dbt.dateadd('month', 3, 'procedure_quarter_start')) }} as date) as period_end,
        cast(cast(extract(year from procedure_quarter_start) as integer) as varchar) || '-Q'
            || cast(cast(extract(quarter from procedure_quarter_start) as integer) as varchar) as period_label
    from by_site
    union all
    select by_site.*, 'year', cast({{ dbt.date_trunc('year', 'procedure_date') }} as date),
        cast({{ dbt.dateadd('day', -1, dbt.dateadd('year', 1, dbt.date_trunc('year', 'procedure_date'))) }} as date),
        cast(cast(extract(year from procedure_date) as integer) as varchar)
    from by_site
    union all
    select by_site.*, 'all_time', registry_start.first_procedure_date, {{ as_of_date() }}, 'all'
    from by_site
    cross join registry_start
),

aggregated as (
    select
        site_id, period_type, period_label, period_start, period_end, la_grade, la_grade_rank,
        count(distinct patient_sk) as n_patients
    from by_period
    group by site_id, period_type, period_label, period_start, period_end, la_grade, la_grade_rank
)

select
    site_id || ':' || period_type || ':' || period_label || ':' || la_grade as la_grade_row_sk,
    site_id,
    period_type,
    period_label,
    period_start,
    period_end,
    la_grade,
    la_grade_rank,
    la_grade_rank >= 1 as esophagitis_any,
    n_patients,
    {{ is_small_cell('n_patients') }} as suppressed,
    {{ as_of_date() }} as as_of
from aggregated
