with index_poems as (
    select site_id, procedure_quarter_start, technical_success
    from {{ ref('fct_procedure') }}
    where is_index_poem
),

by_site_and_all as (
    select site_id, procedure_quarter_start, technical_success from index_poems
    union all
    select 'ALL' as site_id, procedure_quarter_start, technical_success from index_poems
),

counts as (
    select
        site_id,
        procedure_quarter_start as quarter_start,
        sum(case when technical_success then 1 else 0 end) as numerator,
        count(*) as denominator
    from by_site_and_all
    group by site_id, procedure_quarter_start
)

select
    site_id,
    quarter_start,
    cast({{ dbt.dateadd('day', -1, dbt.dateadd('month', 3, 'quarter_start')) }} as date) as quarter_end,
    cast(extract(year from quarter_start) as integer) as year,
    cast(extract(quarter from quarter_start) as integer) as quarter,
    numerator,
    denominator,
    {{ safe_rate('numerator', 'denominator') }} as rate,
    {{ wilson_interval('numerator', 'denominator') }},
    'wilson' as ci_method,
    {{ is_small_cell('numerator') }} or {{ is_small_cell('denominator') }} as suppressed,
    {{ as_of_date() }} as as_of
from counts
