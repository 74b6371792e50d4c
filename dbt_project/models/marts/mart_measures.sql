-- The reporting mart: one row per measure x site (and ALL) x period (quarter, year,
-- all time) x denominator variant. Periods group index POEMs by procedure date.
-- Counts of 1 to small_cell_min - 1 are flagged `suppressed` (clinical-spec §8.5):
-- cross-site outputs must not show them.
with members as (
    select * from {{ ref('mart_measure_members') }}
),

registry_start as (
    select min(procedure_date) as first_procedure_date from {{ ref('fct_procedure') }} where is_index_poem
),

by_site as (
    select site_id, measure_id, denominator_variant, procedure_date, procedure_quarter_start, procedure_year,
        in_numerator, value
    from members
    union all
    select 'ALL', measure_id, denominator_variant, procedure_date, procedure_quarter_start, procedure_year,
        in_numerator, value
    from members
),

by_period as (
    {{ expand_reporting_periods('by_site', 'registry_start') }}
),

aggregated as (
    select
        measure_id,
        site_id,
        period_type,
        period_label,
        period_start,
        period_end,
        denominator_variant,
        sum(case when in_numerator then 1 else 0 end) as numerator,
        count(*) as denominator,
        percentile_cont(0.5) within group (order by value) as median_value
    from by_period
    group by measure_id, site_id, period_type, period_label, period_start, period_end, denominator_variant
),

catalog as (
    select * from {{ ref('measure_catalog') }}
),

benchmarks as (
    select * from {{ ref('benchmarks') }}
)

select
    aggregated.measure_id || ':' || aggregated.site_id || ':' || aggregated.period_type || ':'
        || aggregated.period_label || ':' || aggregated.denominator_variant as measure_row_sk,
    aggregated.measure_id,
    catalog.name as measure_name,
    catalog.statistic,
    aggregated.site_id,
    aggregated.period_type,
    aggregated.period_label,
    aggregated.period_start,
    aggregated.period_end,
    aggregated.denominator_variant,
    case when catalog.statistic = 'proportion' then aggregated.numerator end as numerator,
    aggregated.denominator,
    case when catalog.statistic = 'proportion' then {{ safe_rate('aggregated.numerator', 'aggregated.denominator') }} end
        as rate,
    case
        when catalog.statistic = 'proportion' then {{ safe_rate('aggregated.numerator', 'aggregated.denominator') }}
        else aggregated.median_value
    end as estimate,
    case when catalog.statistic = 'proportion' then
        {{ wilson_bound('aggregated.numerator', 'aggregated.denominator', bound='lower') }} end as ci_lower,
    case when catalog.statistic = 'proportion' then
        {{ wilson_bound('aggregated.numerator', 'aggregated.denominator', bound='upper') }} end as ci_upper,
    case when catalog.statistic = 'proportion' then 'wilson' else 'none' end as ci_method,
    {{ is_small_cell('aggregated.denominator') }}
        or (catalog.statistic = 'proportion' and {{ is_small_cell('aggregated.numerator') }}) as suppressed,
    {{ as_of_date() }} as as_of,
    catalog.numerator as numerator_definition,
    catalog.denominator as denominator_definition,
    catalog.exclusions,
    catalog.window_code,
    catalog.definition_source,
    catalog.higher_is_better,
    catalog.key_measure,
    catalog.benchmark_key,
    benchmarks.value as benchmark_value,
    benchmarks.low as benchmark_low,
    benchmarks.high as benchmark_high,
    benchmarks.definition_code as benchmark_definition_code,
    benchmarks.citation as benchmark_citation,
    benchmarks.provenance_tag as benchmark_provenance_tag
from aggregated
inner join catalog on catalog.measure_id = aggregated.measure_id
left join benchmarks on benchmarks.benchmark_key = catalog.benchmark_key
